"""The doctor's fixes take the engine's road to a host (real sshd on 127.0.0.1, no lab): each
command holds the host lock, is announced and streamed as events, and no secret comes back in
an event or a diagnosis."""

from __future__ import annotations

from hubwizard.core.events import CommandStarted, OutputLine
from hubwizard.core.redact import MASK
from hubwizard.doctor import model as doctor
from hubwizard.remote import hostlock
from hubwizard.remote.connections import Connections
from hubwizard.session import open_site
from tests.conftest import write_site

SECRET = "s3cr3t-doctor-value"
HELD = f"flock -n {hostlock.LOCK} true && echo lock-free || echo lock-held"


def _fix(tmp_path, ssh_env, commands: tuple[str, ...]) -> tuple[doctor.Diagnosis, list]:
    session = open_site(write_site(tmp_path, ssh_env), prompt=None)
    session.secrets.add_runtime("hub_api_token", SECRET)
    conns = Connections(session.site, session.secrets)
    events: list = []
    bad = doctor.Diagnosis("disk-space", "node1", False, "/ is 97% full", "", "remove unused images", commands)
    try:
        return doctor.apply_fix(session, conns, bad, events.append), events
    finally:
        conns.close()


def test_fix_commands_hold_the_host_lock_and_stream_redacted_events(tmp_path, ssh_env):
    _, events = _fix(tmp_path, ssh_env, (HELD, f"echo token={SECRET}"))
    started = [e for e in events if isinstance(e, CommandStarted)]
    assert [(e.step, e.host, e.phase) for e in started] == [("doctor:disk-space", "node1", "apply")] * 2
    lines = [e.line for e in events if isinstance(e, OutputLine) and e.step == "doctor:disk-space"]
    assert "lock-held" in lines
    assert f"token={MASK}" in lines
    assert not any(SECRET in str(e) for e in events)


def test_a_failed_fix_names_the_command_and_host_without_the_secret(tmp_path, ssh_env):
    after, events = _fix(tmp_path, ssh_env, (f"echo {SECRET}; exit 3", "echo never"))
    assert not after.ok and after.summary.startswith("the fix failed: `echo ")
    assert "exited 3 on node1" in after.summary and SECRET not in after.summary and MASK in after.summary
    assert [e.command for e in events if isinstance(e, CommandStarted)] == [f"echo {MASK}; exit 3"]
