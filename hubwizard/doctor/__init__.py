"""The doctor: troubleshooting checks that map symptoms to a diagnosis and a fix."""
