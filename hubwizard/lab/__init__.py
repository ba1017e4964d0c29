"""The lab: a local rehearsal cluster of real machines (containers with sshd + dockerd),
its images, services (registry, ACME CA) and the site file that points at it."""
