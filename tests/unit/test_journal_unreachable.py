"""An unreachable host's journal entry and report are redacted like any output (issue 12, Low):
an UnreachableError may quote the command that was running when the connection dropped."""

from __future__ import annotations

from pathlib import Path

from hubwizard.core.config import parse_site
from hubwizard.core.errors import UnreachableError
from hubwizard.core.journal import Journal
from hubwizard.core.secrets import Secrets
from hubwizard.core.steps import load_steps
from hubwizard.engine.runner import Engine
from tests.unit.test_hub_actions import SITE

SECRET = "s3cret-token-that-must-not-be-written"


class _DroppedConnections:
    """Every host's connection drops while running a command that holds the secret."""

    def get(self, name: str):
        raise UnreachableError(f"{name}: the SSH connection dropped while running: echo {SECRET} | docker login",
                               fix=f"run again (it was `{SECRET}`)")


def test_unreachable_entry_redacted(tmp_path: Path):
    site = parse_site(SITE)
    journal = Journal(tmp_path / "journal.jsonl")
    events: list = []
    eng = Engine(site, load_steps("swarm-mode"), _DroppedConnections(), Secrets({"registry_password": SECRET}),
                 journal, events.append)
    step = eng.steps[0]
    host = eng.hosts_for(step)[0]
    result = eng._host(step, host, "apply")
    assert result.status == "unreachable"
    written = (tmp_path / "journal.jsonl").read_text()
    assert "dropped while running" in written and SECRET not in written
    assert SECRET not in result.message and SECRET not in (result.fix or "")
