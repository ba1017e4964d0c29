"""Reaching hosts: the SSH/local transport, one connection per host, the Docker API over
that connection, the host lock, and the inventory's host probe."""
