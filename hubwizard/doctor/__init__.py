"""The doctor: troubleshooting checks that map symptoms to a diagnosis and a fix.

Modules, each importing only those after it: model (runner, CLI) > checks > fixes (the one
road a fix takes to a host) > context (Diagnosis, DoctorContext)."""
