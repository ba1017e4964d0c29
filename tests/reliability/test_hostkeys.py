"""Host keys: an unknown key is refused unless confirmed, a changed key always — directly, through
a jump host, and on the Docker API path (hubwizard.remote.dockerapi rides the same SSH connection).

tests/integration/test_engine_ssh.py covers the direct case through the CLI; this adds jump hosts,
the confirm callback, known_hosts left untouched on refusal, and the Docker API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hubwizard.core.errors import HostKeyError
from hubwizard.remote.transport import HostKeyPolicy, SshTarget, SshTransport
from tests.reliability.crash import hw
from tests.reliability.fleet import Fleet, write_site


def _other_key(fleet: Fleet) -> str:
    """An ed25519 public key that is not the host's: what a man in the middle presents."""
    kind, key = Path(f"{fleet.key}.pub").read_text().split()[:2]
    return f"{kind} {key}"


def _target(fleet: Fleet, i: int, jump: SshTarget | None = None) -> SshTarget:
    return SshTarget(f"h{i}", "127.0.0.1", fleet.servers[i].port, "root", (str(fleet.key),), jump)


def test_unknown_key_refused_and_known_hosts_untouched(fleet, tmp_path):
    kh = tmp_path / "kh"
    kh.write_text("")
    asked: list[tuple[str, str]] = []
    policy = HostKeyPolicy(kh, confirm=lambda host, fp: asked.append((host, fp)) or False)
    with pytest.raises(HostKeyError) as exc:
        SshTransport(_target(fleet, 0), policy).connect()
    assert "SHA256:" in exc.value.message and exc.value.fix and "--accept-new-host-keys" in exc.value.fix
    assert asked and asked[0][0] == f"[127.0.0.1]:{fleet.servers[0].port}"
    assert kh.read_text() == ""


def test_confirmed_key_is_remembered(fleet, tmp_path):
    kh = tmp_path / "kh"
    t = SshTransport(_target(fleet, 0), HostKeyPolicy(kh, confirm=lambda h, fp: True))
    assert t.run("true").ok
    t.close()
    t = SshTransport(_target(fleet, 0), HostKeyPolicy(kh, confirm=None))  # no confirmation needed now
    assert t.run("true").ok
    t.close()


def test_changed_key_refused_even_when_confirming(fleet, tmp_path):
    kh = tmp_path / "kh"
    kh.write_text(f"[127.0.0.1]:{fleet.servers[0].port} {_other_key(fleet)}\n")
    before = kh.read_text()
    policy = HostKeyPolicy(kh, confirm=lambda h, fp: True)
    with pytest.raises(HostKeyError) as exc:
        SshTransport(_target(fleet, 0), policy).connect()
    assert "CHANGED" in exc.value.message and "ssh-keygen -R" in (exc.value.fix or "")
    assert kh.read_text() == before


def test_jump_host_unknown_refused(fleet, tmp_path):
    kh = tmp_path / "kh"
    kh.write_text(fleet.servers[1].known_hosts_line())  # the target is known, the jump host is not
    t = SshTransport(_target(fleet, 1, jump=_target(fleet, 0)), HostKeyPolicy(kh))
    with pytest.raises(HostKeyError) as exc:
        t.connect()
    assert str(fleet.servers[0].port) in exc.value.message


def test_target_behind_jump_unknown_refused(fleet, tmp_path):
    kh = tmp_path / "kh"
    kh.write_text(fleet.servers[0].known_hosts_line())  # the jump host is known, the target is not
    t = SshTransport(_target(fleet, 1, jump=_target(fleet, 0)), HostKeyPolicy(kh))
    with pytest.raises(HostKeyError) as exc:
        t.connect()
    assert str(fleet.servers[1].port) in exc.value.message
    t.close()


def test_target_behind_jump_changed_refused(fleet, tmp_path):
    kh = tmp_path / "kh"
    kh.write_text(fleet.servers[0].known_hosts_line() + f"[127.0.0.1]:{fleet.servers[1].port} {_other_key(fleet)}\n")
    t = SshTransport(_target(fleet, 1, jump=_target(fleet, 0)), HostKeyPolicy(kh, confirm=lambda h, fp: True))
    with pytest.raises(HostKeyError) as exc:
        t.connect()
    assert "CHANGED" in exc.value.message
    t.close()


def test_jump_site_through_cli(fleet, tmp_path):
    """The CLI with a site whose nodes sit behind the hub: unknown -> exit 3 and nothing runs;
    all keys known -> the run completes through the jump."""
    site = write_site(tmp_path, fleet, jump=True, known=False)
    res = hw("apply", "-c", str(site), "--yes", "--json")
    assert res.returncode == 3, res.stdout + res.stderr
    assert not (tmp_path / "work" / "hub").exists() and not (tmp_path / "work" / "node1").exists()
    (tmp_path / "known_hosts").write_text("".join(s.known_hosts_line() for s in fleet.servers))
    res = hw("apply", "-c", str(site), "--yes", "--json")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert {h for s in json.loads(res.stdout)["steps"] for h in s["hosts"]} == {"hub", "node1", "node2"}
    kh = tmp_path / "known_hosts"
    kh.write_text(kh.read_text().replace(fleet.servers[2].known_hosts_line(),
                                         f"[127.0.0.1]:{fleet.servers[2].port} {_other_key(fleet)}\n"))
    res = hw("plan", "-c", str(site), "--accept-new-host-keys")
    assert res.returncode == 3 and "CHANGED" in res.stdout + res.stderr


def test_docker_api_path_refuses_unknown_and_changed_keys(fleet, tmp_path):
    """client_for() opens no connection of its own: the first API call goes through our policy."""
    from hubwizard.remote.dockerapi import client_for

    kh = tmp_path / "kh"
    kh.write_text("")
    client = client_for(SshTransport(_target(fleet, 0), HostKeyPolicy(kh)), timeout=10)
    with pytest.raises(HostKeyError):
        client.ping()
    kh.write_text(f"[127.0.0.1]:{fleet.servers[0].port} {_other_key(fleet)}\n")
    client = client_for(SshTransport(_target(fleet, 0), HostKeyPolicy(kh, confirm=lambda h, fp: True)), timeout=10)
    with pytest.raises(HostKeyError) as exc:
        client.info()
    assert "CHANGED" in exc.value.message
    assert kh.read_text().count("\n") == 1
