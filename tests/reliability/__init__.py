"""Reliability and security suites: crash and resume, faults, hostile input, secrets, host keys,
exposure. See RELIABILITY.md at the top of the repository."""
