"""The classic track on the lab, for real: Docker on TCP with TLS (refused without a client
cert, from this machine with the docker SDK and with curl), the manager's port answered by a
real Docker API, the autofs maps and daemon, UIDs compared across hosts, clone checks.

What cannot run here (no Docker Hub, no kernel NFS) is reported by the steps as "cannot
run here", and these tests assert that it is said, not hidden."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.integration.classic_lab import ClassicLab, classic_lab_fixture, clone_engine_key, ssh  # noqa: F401

pytestmark = pytest.mark.lab


def _refused() -> tuple[type[Exception], ...]:
    import docker
    import requests

    return docker.errors.DockerException, requests.exceptions.SSLError, requests.exceptions.ConnectionError


REFUSED = _refused()


def _tls(lab: ClassicLab, with_cert: bool):
    import docker

    d = lab.tls_dir
    return docker.tls.TLSConfig(client_cert=(str(d / "client-cert.pem"), str(d / "client-key.pem"))
                                if with_cert else None, ca_cert=str(d / "ca.pem"), verify=True)


def _client(lab: ClassicLab, host: str, port: int, with_cert: bool):
    import docker

    client = docker.DockerClient(base_url=f"tcp://{lab.ip(host)}:{port}", tls=_tls(lab, with_cert),
                                 version="1.41", timeout=20)
    client.api.trust_env = False  # else REQUESTS_CA_BUNDLE (a proxy's CA, here) replaces the site CA
    return client


def test_second_apply_changes_nothing(classic_lab):
    from hubwizard.session import open_site

    session = open_site(classic_lab.site_path, prompt=None)
    engine = session.engine(lambda e: None)
    try:
        summary = engine.run("apply")
    finally:
        engine.conns.close()
    changed = [(r.step, r.host, r.status) for r in summary.results if r.status not in ("unchanged", "skipped")]
    assert not changed


@pytest.mark.parametrize("host", ["hub", "node1", "node2"])
def test_docker_tcp_needs_the_client_cert_sdk(classic_lab, host):
    assert _client(classic_lab, host, 2376, with_cert=True).ping() is True
    with pytest.raises(REFUSED) as refused:
        _client(classic_lab, host, 2376, with_cert=False).ping()
    assert "bad certificate" in str(refused.value) or "certificate required" in str(refused.value)


def test_docker_tcp_needs_the_client_cert_curl(classic_lab):
    if not shutil.which("curl"):
        pytest.skip("curl is not installed here")
    d, url = classic_lab.tls_dir, f"https://{classic_lab.ip('node1')}:2376/_ping"
    good = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", d / "ca.pem", "--cert",
                           d / "client-cert.pem", "--key", d / "client-key.pem", url], capture_output=True, text=True)
    assert good.returncode == 0 and good.stdout == "OK", good.stderr
    bad = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", d / "ca.pem", url],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and bad.stdout != "OK"
    plain = subprocess.run(["curl", "-sS", "--max-time", "10", f"http://{classic_lab.ip('node1')}:2376/_ping"],
                           capture_output=True, text=True)
    assert plain.stdout != "OK"  # dockerd speaks TLS only there
    nothing = subprocess.run(["curl", "-sS", "--max-time", "5", f"http://{classic_lab.ip('node1')}:2375/_ping"],
                             capture_output=True, text=True)
    assert nothing.returncode != 0  # no plain TCP port at all


def test_the_ca_key_never_leaves_the_admin_machine(classic_lab):
    assert (classic_lab.tls_dir / "ca-key.pem").stat().st_mode & 0o077 == 0
    for host in ("hub", "node1"):
        listing = ssh(classic_lab, host, "find /etc/docker/tls -type f | sort").stdout.split()
        assert not any("ca-key" in p for p in listing), listing
        mode = ssh(classic_lab, host, "stat -c %a /etc/docker/tls/server-key.pem").stdout.strip()
        assert mode == "600"


def test_manager_port_is_answered_by_a_real_docker_api_with_tls(classic_lab):
    """`docker -H tcp://HUB:4000 ps -a` (lab: the stand-in relays to the hub's dockerd)."""
    names = {c.name for c in _client(classic_lab, "hub", 4000, with_cert=True).containers.list(all=True)}
    assert {"consul", "swarm-manager"} <= names
    with pytest.raises(REFUSED):
        _client(classic_lab, "hub", 4000, with_cert=False).containers.list(all=True)
    hub_ip = classic_lab.ip("hub")
    out = ssh(classic_lab, "hub", f"docker -H tcp://{hub_ip}:4000 --tlsverify --tlscacert=/etc/docker/tls/client/ca.pem "
              "--tlscert=/etc/docker/tls/client/cert.pem --tlskey=/etc/docker/tls/client/key.pem ps -a").stdout
    assert "swarm-manager" in out and "consul" in out


def test_verify_says_what_cannot_run_here(classic_lab):
    from hubwizard.session import open_site

    session = open_site(classic_lab.site_path, prompt=None)
    engine = session.engine(lambda e: None)
    try:
        summary = engine.run("verify")
    finally:
        engine.conns.close()
    assert summary.exit_code == 0
    skipped = {(c.step, c.detail.split(":")[0]) for c in summary.checks if c.skipped}
    assert ("classic-autofs", "cannot check on this host") in skipped
    assert any(step == "classic-nfs-home" for step, _ in skipped)
    assert any(step == "classic-join" for step, _ in skipped)


def test_autofs_maps_written_and_daemon_reloaded(classic_lab):
    hub_ip = classic_lab.ip("hub")
    for node in ("node1", "node2"):
        assert ssh(classic_lab, node, "cat /etc/auto.home").stdout.strip().endswith(f"{hub_ip}:/home/&")
        assert "/home /etc/auto.home" in ssh(classic_lab, node, "cat /etc/auto.master.d/hubwizard.autofs").stdout
        assert ssh(classic_lab, node, "systemctl is-active autofs").stdout.strip() == "active"
        dump = ssh(classic_lab, node, "automount -m").stdout
        assert "Mount point: /home" in dump and "map: /etc/auto.home" in dump
        assert "autofs" in ssh(classic_lab, node, "findmnt -n -o FSTYPE /home").stdout


def test_uids_that_differ_are_named(classic_lab):
    from hubwizard.session import open_site

    script = "id alice >/dev/null 2>&1 || useradd -M -u {uid} alice; mkdir -p /home/alice"
    try:
        ssh(classic_lab, "hub", script.format(uid=1500))
        ssh(classic_lab, "node1", script.format(uid=1500).replace("; mkdir -p /home/alice", ""))
        ssh(classic_lab, "node2", script.format(uid=1501).replace("; mkdir -p /home/alice", ""))
        session = open_site(classic_lab.site_path, prompt=None)
        engine = session.engine(lambda e: None)
        try:
            summary = engine.run("verify", only="classic-uids")
        finally:
            engine.conns.close()
        (result,) = summary.results
        assert result.status == "failed"
        assert "alice: uid:gid 1501:1501 on node2, 1500:1500 on hub" in result.output_tail
        assert result.fix and "useradd -u UID" in result.fix
    finally:
        for host in ("hub", "node1", "node2"):
            ssh(classic_lab, host, "userdel alice 2>/dev/null; rmdir /home/alice 2>/dev/null; true", check=False)


def test_clone_checks_before_a_snapshot(classic_lab):
    from hubwizard.actions.classic import clone_problems

    conns = classic_lab.connections()
    try:
        node = clone_problems(conns.get("node1"))
        hub = clone_problems(conns.get("hub"))
    finally:
        conns.close()
    assert any("key.json" in p for p in node)
    assert any("container(s) exist" in p for p in hub)


def test_a_clone_that_kept_the_engine_key_gets_its_own(classic_lab):
    """What `add-node` runs for a cloned node (the scale_out steps), with a copied key.json."""
    from hubwizard.session import open_site

    clone_engine_key(classic_lab)
    session = open_site(classic_lab.site_path, prompt=None)
    engine = session.engine(lambda e: None)
    try:
        summary = engine.run("apply", hosts={"node2"}, steps=[s for s in session.steps if s.scale_out])
    finally:
        engine.conns.close()
    by_step = {r.step: r.status for r in summary.results}
    assert by_step["classic-engine-id"] == "changed", summary.results
    assert summary.exit_code == 0
    ids = {h: ssh(classic_lab, h, "docker info --format '{{.ID}}'").stdout.strip() for h in ("node1", "node2")}
    assert ids["node1"] != ids["node2"]
