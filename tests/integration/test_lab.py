"""The lab, for real: up -> SSH into every machine -> docker info -> status -> down -> nothing left.

Why end to end: the lab is the test bed of every recipe; if its machines do not boot like
servers, or its site file or known_hosts are wrong, every other integration test fails for the
wrong reason. So these tests use only what an admin would: the site file, the key and the
known_hosts it names (paramiko with RejectPolicy: no host key is trusted on first use).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import paramiko
import pytest

from tests.integration.lab_fixture import Lab, docker_client_or_skip, running_lab, unique_name

LABEL = "io.hubwizard.lab"
# Time limits: a test's limit covers the fixtures it sets up first. The docker_lab tests: the first
# one pays `lab up --with-docker --nodes 2` (and, on a fresh machine, ~4 min of image builds);
# the others bring a small lab up and down themselves (210 s for a 1-node lab at load 12 here).


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m hubwizard.lab.cli ...` the way an admin would run `hubwizard lab ...`."""
    return subprocess.run(
        [sys.executable, "-m", "hubwizard.lab.cli", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env=env or os.environ.copy(),
    )


def _ssh(site: Any, host_name: str) -> paramiko.SSHClient:
    """Connect as the site file says: its key, its known_hosts, through its jump host if any."""
    host = site.host(host_name)
    sock = None
    if host.jump:
        hub = _ssh(site, host.jump)
        sock = hub.get_transport().open_channel("direct-tcpip", (host.address, host.port), ("127.0.0.1", 0))
    client = paramiko.SSHClient()
    client.load_host_keys(site.ssh.known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        host.address,
        port=host.port,
        username=host.user,
        key_filename=host.key,
        sock=sock,
        look_for_keys=False,
        allow_agent=False,
        timeout=15,
    )
    return client


def _run(client: paramiko.SSHClient, command: str) -> tuple[int, str]:
    _, stdout, stderr = client.exec_command(command, timeout=60)
    out = stdout.read().decode() + stderr.read().decode()
    return stdout.channel.recv_exit_status(), out.strip()


def _leftovers(name: str) -> dict[str, list[str]]:
    client = docker_client_or_skip()
    flt = {"label": f"{LABEL}={name}"}
    return {
        "containers": [c.name for c in client.containers.list(all=True, filters=flt)],
        "volumes": [v.name for v in client.volumes.list(filters=flt)],
        "networks": [n.name for n in client.networks.list(filters=flt)],
    }


@pytest.fixture(scope="module")
def docker_lab(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with running_lab(tmp_path_factory.mktemp("lab"), with_docker=True, nodes=2) as up:
        yield up


@pytest.mark.lab
@pytest.mark.timeout(1200)
def test_site_file_validates_and_names_the_lab(docker_lab: Lab) -> None:
    site = docker_lab.site()
    record = docker_lab.record
    assert site.site.name == docker_lab.name
    assert [h.name for h in site.hosts] == ["hub", "node1", "node2"]
    assert site.registry.url == record["registry"]["url"] and site.registry.insecure
    assert site.docker.insecure_registries == [record["registry"]["url"]]
    assert site.images.hub_base == f"{record['registry']['url']}/lab/jupyterhub:5"
    assert site.https.acme_server == f"https://{record['acme']['ip']}:14000/dir"
    assert Path(site.https.acme_ca_bundle).is_file()
    assert Path(record["pebble_root"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    mode = stat.S_IMODE(docker_lab.secrets_path.stat().st_mode)
    assert mode == 0o600
    assert docker_lab.secrets["registry_password"] not in docker_lab.site_path.read_text()
    # the login: the lab's OpenID provider by default, its client secret in the secrets file only
    assert site.oauth.provider == "generic" and site.oauth.client_id == record["oidc"]["client_id"]
    assert site.oauth.token_url == f"http://{record['oidc']['ip']}:9400/oauth2/token"
    assert docker_lab.secrets["oauth_client_secret"] not in docker_lab.site_path.read_text()


@pytest.mark.lab
@pytest.mark.timeout(1200)
def test_ssh_into_every_machine_and_docker_answers(docker_lab: Lab) -> None:
    site = docker_lab.site()
    for host in site.hosts:
        client = _ssh(site, host.name)
        try:
            code, out = _run(client, "hostname && docker info --format '{{.ServerVersion}} {{.Driver}}'")
            assert code == 0, out
            assert out.splitlines()[0] == host.name
            assert "overlay2" in out
            code, state = _run(client, "systemctl is-system-running")
            assert state in ("running", "degraded"), state
        finally:
            client.close()


@pytest.mark.lab
@pytest.mark.timeout(1200)
def test_registry_serves_stand_ins_to_machines(docker_lab: Lab) -> None:
    site = docker_lab.site()
    client = _ssh(site, "node1")
    try:
        password = docker_lab.secrets["registry_password"]
        login = f"printf %s '{password}' | docker login -u lab --password-stdin {site.registry.url}"
        assert _run(client, login)[0] == 0
        code, out = _run(
            client,
            f"docker manifest inspect --insecure {site.images.hub_base} >/dev/null || docker pull -q {site.images.hub_base}",
        )
        assert code == 0, out
    finally:
        client.close()


@pytest.mark.lab
@pytest.mark.timeout(1200)
def test_status_reports_every_machine_healthy(docker_lab: Lab) -> None:
    done = _cli("status", "--name", docker_lab.name, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    machines = {m["name"]: m for m in report["machines"]}
    assert {"hub", "node1", "node2", "registry", "acme", "oidc"} <= set(machines)
    assert machines["oidc"]["state"] == "running"
    for name in ("hub", "node1", "node2"):
        assert machines[name]["state"] == "running"
        assert machines[name]["sshd"] == "yes"
        assert machines[name]["dockerd"] == "yes"


@pytest.mark.lab
@pytest.mark.timeout(1200)
def test_second_up_reuses_same_shape_and_refuses_another(docker_lab: Lab, tmp_path: Path) -> None:
    again = _cli("up", "--name", docker_lab.name, "--with-docker", "-o", str(tmp_path / "again.toml"))
    assert again.returncode == 0, again.stderr
    assert "already up" in again.stdout
    other = _cli("up", "--name", docker_lab.name, "--nodes", "3", "-o", str(tmp_path / "other.toml"))
    assert other.returncode == 1
    assert f"lab down --name {docker_lab.name}" in other.stderr


@pytest.mark.lab
@pytest.mark.timeout(900)
def test_down_leaves_nothing_and_twice_is_fine(tmp_path: Path) -> None:
    name = unique_name("d")
    with running_lab(tmp_path, name=name, nodes=1) as up:
        assert _leftovers(up.name)["containers"]
    assert _leftovers(name) == {"containers": [], "volumes": [], "networks": []}
    again = _cli("down", "--name", name)
    assert again.returncode == 0, again.stderr
    assert "nothing to remove" in again.stdout


@pytest.mark.lab
@pytest.mark.timeout(900)
def test_non_root_sudo_password_port_and_jump(tmp_path: Path) -> None:
    options = {"nodes": 1, "spares": 1, "user": "admin", "sudo_password": True, "ssh_port": 2222, "jump": True}
    with running_lab(tmp_path, **options) as up:
        site = up.site()
        assert site.host("spare1").spare and site.host("node1").jump == "hub"
        direct = paramiko.SSHClient()
        direct.load_host_keys(site.ssh.known_hosts)
        direct.set_missing_host_key_policy(paramiko.RejectPolicy())
        node = site.host("node1")
        with pytest.raises(paramiko.AuthenticationException):
            direct.connect(
                node.address,
                port=2222,
                username="admin",
                key_filename=node.key,
                look_for_keys=False,
                allow_agent=False,
                timeout=15,
            )
        client = _ssh(site, "node1")
        try:
            assert _run(client, "sudo -n true")[0] != 0  # sudo wants the password
            password = up.secrets["sudo_password"]
            code, out = _run(client, f"printf '%s\\n' '{password}' | sudo -S -p '' id -u")
            assert (code, out) == (0, "0")
        finally:
            client.close()


@pytest.mark.lab
@pytest.mark.timeout(900)
def test_failed_up_removes_what_it_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hubwizard.lab import lifecycle as lab
    from hubwizard.lab import machines as lab_machines

    docker_client_or_skip()
    name = unique_name("f")

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("simulated boot failure")

    monkeypatch.setattr(lab_machines, "wait_ready", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        lab.up(lab.LabSpec(name=name, nodes=1), tmp_path / "f.toml", progress=lambda _m: None)
    assert _leftovers(name) == {"containers": [], "volumes": [], "networks": []}
    assert not lab.state_dir(name).exists()


@pytest.mark.parametrize("bad", [["--name", "Bad_Name"], ["--user", "root;rm"], ["--sudo-password"]])
def test_bad_input_exits_2(bad: list[str]) -> None:
    done = _cli("up", *bad)
    assert done.returncode == 2, done.stderr


def test_no_engine_says_how_to_get_one(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no.sock"}
    done = _cli("up", "--name", "noengine", "-o", str(tmp_path / "x.toml"), env=env)
    assert done.returncode == 1
    assert "scripts/dockerd.sh start" in done.stderr and "docker.io" in done.stderr


def test_site_file_of_a_record_validates_without_docker(tmp_path: Path) -> None:
    """The site file's shape (jump, sudo, spares, registry, ACME) checked against config.py alone."""
    from hubwizard.core.config import load_site
    from hubwizard.core.secrets import write_secrets
    from hubwizard.lab.lifecycle import LabSpec
    from hubwizard.lab.site import write_site

    spec = LabSpec(name="x", nodes=1, spares=1, user="admin", sudo_password=True, ssh_port=2222, jump=True)
    record = {
        "name": "x",
        "spec": {**spec.__dict__},
        "subnet": "172.30.0.0/16",
        "machines": {
            "hub": {"ip": "172.30.0.3", "role": "hub"},
            "node1": {"ip": "172.30.0.4", "role": "node"},
            "spare1": {"ip": "172.30.0.5", "role": "spare"},
        },
        "registry": {"url": "172.30.0.2:5000"},
        "acme": {"ip": "172.30.0.6"},
        "key": "/keys/id_ed25519",
        "known_hosts": "/keys/known_hosts",
        "pebble_cert": "/keys/pebble-cert.pem",
    }
    site_path = tmp_path / "x.toml"
    write_site(site_path, record)
    write_secrets(site_path, {"registry_password": "s3cret", "sudo_password": "pw"})
    site = load_site(site_path, check_files=False)  # the record's key files exist in a real lab only
    assert site.hub_host.address == "172.30.0.3" and site.hub_host.jump is None
    assert [n.name for n in site.nodes] == ["node1"]
    assert site.host("spare1").spare and site.host("spare1").jump == "hub"
    assert all(h.sudo == "password" and h.port == 2222 and h.user == "admin" for h in site.hosts)
    assert site.images.singleuser == "172.30.0.2:5000/lab/singleuser:latest"
    assert site.storage.implementation == "ganesha" and site.oauth.provider == "dummy"
    assert site.oauth.i_understand_anyone_can_log_in  # a lab says so; no other site gets dummy silently
    secrets_file = tmp_path / "x.secrets.toml"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert "s3cret" not in site_path.read_text()


def test_machine_identity_files_encode_the_access_rules() -> None:
    """What each machine is told before it boots: the rules the SSH tests above rely on."""
    from hubwizard.lab.machines import MachineSpec, identity_files, known_hosts_lines

    node = MachineSpec("node1", "node", "admin", 2222, "ssh-ed25519 AAAA k", "pw", "10.1.0.3", "10.1.0.2:5000")
    files = identity_files(node)
    sshd = files["/etc/ssh/sshd_config.d/50-hubwizard-lab.conf"][0]
    assert "Port 2222" in sshd and "PermitRootLogin no" in sshd and "AllowUsers admin@10.1.0.3" in sshd
    assert "PasswordAuthentication no" in sshd
    assert files["/etc/sudoers.d/hubwizard-lab"] == ("admin ALL=(ALL:ALL) ALL\n", 0o440)
    assert files["/etc/hubwizard-lab/password"][1] == 0o600
    assert '"10.1.0.2:5000"' in files["/etc/docker/daemon.json"][0]
    root = identity_files(MachineSpec("hub", "hub", "root", 22, "ssh-ed25519 AAAA k"))
    assert "AllowUsers" not in root["/etc/ssh/sshd_config.d/50-hubwizard-lab.conf"][0]
    assert "/etc/sudoers.d/hubwizard-lab" not in root and "/etc/hubwizard-lab/password" not in root
    assert known_hosts_lines("10.1.0.4", 22, ["ssh-ed25519 AAAA"]) == ["10.1.0.4 ssh-ed25519 AAAA"]
    assert known_hosts_lines("10.1.0.4", 2222, ["ssh-ed25519 AAAA"]) == ["[10.1.0.4]:2222 ssh-ed25519 AAAA"]


@pytest.mark.lab
@pytest.mark.timeout(900)
def test_cleanup_removes_its_own_runs_labs_and_no_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """scripts/lab_cleanup.py (scripts/test.sh's trap) removes the labs stamped with its run's id only:
    other engineers' test runs create labs on the same engine at the same time."""
    import time

    run = f"run-{unique_name('c')}"
    monkeypatch.setenv("HUBWIZARD_LAB_RUN", run)
    since = time.time()
    name = unique_name("c")
    with running_lab(tmp_path, name=name, nodes=0):

        def cleanup(run_id: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "scripts/lab_cleanup.py", "--since", str(since), "--run", run_id],
                                  capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[2])

        other = cleanup(run + "-other")
        assert other.returncode == 0 and _leftovers(name)["containers"], other.stdout + other.stderr
        ours = cleanup(run)
        assert ours.returncode == 0, ours.stdout + ours.stderr
        assert f"removing lab {name!r}" in ours.stdout
        assert _leftovers(name) == {"containers": [], "volumes": [], "networks": []}
