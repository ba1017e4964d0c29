"""Fixtures of the reliability suites: restartable sshd fleets, a local sudo user, the CLI in-process."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import pytest

from tests.reliability.fleet import Fleet, start_fleet


def _need_sshd() -> None:
    if not shutil.which("sshd") and not Path("/usr/sbin/sshd").exists():
        pytest.skip("openssh-server is not installed (scripts/setup.sh installs it)")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Fleet:
    """Three sshd servers (hub, node1, node2) for one test module; stopped at its end."""
    _need_sshd()
    f = start_fleet(tmp_path_factory.mktemp("fleet"), 3)
    yield f
    f.stop()


@pytest.fixture
def own_fleet(tmp_path_factory) -> Fleet:
    """Two servers for one test that may stop them or cut their connections."""
    _need_sshd()
    f = start_fleet(tmp_path_factory.mktemp("ownfleet"), 2)
    yield f
    f.stop()


def run_cli(*args: str) -> tuple[int, str, str]:
    """hubwizard.cli.main.main in this process: (exit code, stdout, stderr). SystemExit (argparse) counts."""
    from hubwizard.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return code, out.getvalue(), err.getvalue()
