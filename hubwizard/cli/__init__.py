"""The command line (the stable contract of DESIGN.md), `init`'s questions, add-node and
teardown, and the printer of runs."""
