"""`python -m tests.reliability.driver ARGS`: the hubwizard CLI with the test calls registered.

The crash suite kills this process exactly as it would kill `hubwizard`: it is cli.main."""

import sys

import tests.reliability.actions  # noqa: F401 - registers rel_* calls
from hubwizard.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
