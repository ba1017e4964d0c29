"""The engine's own fixes for failures about the host rather than the step (the fault suites
rely on them): unit tests on real captured messages of sudo 1.9 and the docker 20.10 CLI."""

from __future__ import annotations

import pytest

from hubwizard.core.config import Host
from hubwizard.engine.runner import generic_fix

NODE = Host(name="node1", address="10.0.0.2", role="node", user="admin", sudo="password")


@pytest.mark.parametrize(("output", "words"), [
    ("sudo: no password was provided\nsudo: 1 incorrect password attempt", ("sudo_password", "admin", "node1")),
    ("sudo: a password is required", ('sudo = "password"', "NOPASSWD")),
    ("admin is not in the sudoers file.  This incident will be reported.", ("sudoers",)),
    ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
     ("dockerd", "node1", "--from docker")),
    ("the Docker API on node1 does not answer (is dockerd installed and running?): ConnectionError", ("dockerd",)),
    ("Error while fetching server API version: ('Connection aborted.', FileNotFoundError(2, 'No such file'))",
     ("--from docker",)),
])
def test_generic_fix(output, words):
    fix = generic_fix(output, NODE)
    assert fix and all(w in fix for w in words), fix


def test_no_generic_fix_for_other_failures():
    assert generic_fix("E: Unable to locate package nope", NODE) is None
