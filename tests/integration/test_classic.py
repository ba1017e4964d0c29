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


def test_manager_port_lists_the_nodes_containers_with_tls(classic_lab):
    """`docker -H tcp://HUB:4000 ps -a` (lab: the stand-in manager over the nodes' real engines):
    a container started on node1's own engine is listed as node1/NAME, and only with a client cert."""
    image = classic_lab.session().site.images.singleuser  # pulled on every node by classic-prepull
    ssh(classic_lab, "node1", f"docker run -d --name hubwizard-probe --entrypoint sleep {image} 600")
    try:
        names = {n for c in _client(classic_lab, "hub", 4000, with_cert=True).api.containers(all=True)
                 for n in c["Names"]}
        assert "/node1/hubwizard-probe" in names, names
        with pytest.raises(REFUSED):
            _client(classic_lab, "hub", 4000, with_cert=False).containers.list(all=True)
        hub_ip = classic_lab.ip("hub")
        out = ssh(classic_lab, "hub", f"docker -H tcp://{hub_ip}:4000 --tlsverify --tlscacert=/etc/docker/tls/client/ca.pem "
                  "--tlscert=/etc/docker/tls/client/cert.pem --tlskey=/etc/docker/tls/client/key.pem ps -a").stdout
        print(f"\n$ docker -H :4000 ps -a\n{out}")
        assert "node1/hubwizard-probe" in out
    finally:
        ssh(classic_lab, "node1", "docker rm -f hubwizard-probe", check=False)


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
    """A site user (made with one UID everywhere by the fixture) gets another UID on node2."""
    from hubwizard.actions.classic import site_users
    from hubwizard.session import open_site

    session = open_site(classic_lab.site_path, prompt=None)
    user = site_users(session.site)[0]
    uid, gid = ssh(classic_lab, "hub", f"id -u {user}; id -g {user}").stdout.split()
    try:
        ssh(classic_lab, "node2", f"usermod -u 1501 {user}")
        engine = session.engine(lambda e: None)
        try:
            summary = engine.run("verify", only="classic-uids")
        finally:
            engine.conns.close()
        (result,) = summary.results
        assert result.status == "failed"
        assert f"{user}: uid:gid 1501:{gid} on node2, {uid}:{gid} on hub" in result.output_tail
        assert result.fix and "useradd -u UID" in result.fix
    finally:
        ssh(classic_lab, "node2", f"usermod -u {uid} {user}", check=False)


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


# ----------------------------------------------------------------------- issue 12 items 5 and 6

NODE_CERT = ("--tlsverify --tlscacert=/etc/docker/tls/ca.pem --tlscert=/etc/docker/tls/server-cert.pem "
             "--tlskey=/etc/docker/tls/server-key.pem")
LENT = "/root/hubwizard-test-client"  # the manager's client cert, lent to a node for one test
LENT_CERT = f"--tlsverify --tlscacert={LENT}/ca.pem --tlscert={LENT}/cert.pem --tlskey={LENT}/key.pem"


def _docker_ps(lab: ClassicLab, host: str, flags: str, target: str, port: int):
    return ssh(lab, host, f"timeout 60 docker {flags} -H tcp://{lab.ip(target)}:{port} ps", check=False)


@pytest.fixture
def lent_client_cert(classic_lab):
    """The hub's client cert copied to node1 (what root on a node does NOT have), removed after."""
    conns = classic_lab.connections()
    try:
        hub, node = conns.get("hub"), conns.get("node1")
        for name, mode in (("ca.pem", 0o644), ("cert.pem", 0o644), ("key.pem", 0o600)):
            node.put(hub.get(f"/etc/docker/tls/client/{name}"), f"{LENT}/{name}", mode=mode, sudo=True)
        yield LENT
    finally:
        conns.get("node1").run(f"rm -rf {LENT}", sudo=True)
        conns.close()


def test_root_on_a_node_cannot_drive_other_engines_with_its_server_cert(classic_lab, lent_client_cert):
    """Issue 12 item 5, the attack: node1's own server cert and key, used as a client."""
    for target, port in (("node2", 2376), ("hub", 2376), ("hub", 4000)):
        res = _docker_ps(classic_lab, "node1", NODE_CERT, target, port)
        print(f"\nnode1 -> {target}:{port} with node1's server cert: rc={res.exit_code} {res.output.strip()[-160:]}")
        # a TLS alert refusing the client certificate: Go's dockerd says "bad certificate", the lab's
        # stand-in manager on :4000 (OpenSSL, which checks the key usage) "unsupported certificate";
        # with TLS 1.3 the client may already be writing its request when the server refuses the
        # certificate and closes, so the refusal can arrive as a reset (the lent cert then works)
        refusals = ("bad certificate", "unsupported certificate", "connection reset by peer")
        assert not res.ok and any(r in res.output for r in refusals), res.output
        good = _docker_ps(classic_lab, "node1", LENT_CERT, target, port)
        assert good.ok and "CONTAINER ID" in good.output, good.output


def test_only_the_hub_holds_certs_that_act_as_a_client(classic_lab):
    from hubwizard.actions import tls

    conns = classic_lab.connections()
    try:
        for host in ("hub", "node1", "node2"):
            assert not tls.allows_client_auth(conns.get(host).get("/etc/docker/tls/server-cert.pem")), host
        for node in ("node1", "node2"):
            listing = conns.get(node).run("ls /etc/docker/tls", sudo=True).stdout.split()
            assert sorted(listing) == ["ca.pem", "server-cert.pem", "server-key.pem"], listing
        hub = conns.get("hub")
        assert tls.allows_client_auth(hub.get("/etc/docker/tls/client/cert.pem"))
        assert tls.allows_client_auth(hub.get("/etc/docker/tls/manager-cert.pem"))
        assert hub.run("stat -c %a /etc/docker/tls/manager-key.pem", sudo=True).stdout.strip() == "600"
    finally:
        conns.close()
    # what `swarm manage` does with it: drive a node's engine from the hub
    flags = NODE_CERT.replace("server-", "manager-")
    res = _docker_ps(classic_lab, "hub", flags, "node1", 2376)
    assert res.ok and "CONTAINER ID" in res.output, res.output


PROBE = r"""
import json, socket, sys
out = {}
for port in sys.argv[2:]:
    try:
        socket.create_connection((sys.argv[1], int(port)), timeout=5).close()
        out[port] = "connected"
    except OSError as exc:
        out[port] = f"failed: {exc}"
print(json.dumps(out))
"""


def _probe(lab: ClassicLab, host: str, prefix: str, *ports: int) -> dict[str, str]:
    import json
    import shlex

    res = ssh(lab, host, f"{prefix} python3 -c {shlex.quote(PROBE)} {lab.ip('hub')} {' '.join(map(str, ports))}",
              check=False)
    assert res.ok, res.output[-600:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def container_prefix(classic_lab):
    """`docker run --rm IMAGE` on node1 and on the hub: a plain container (a user's server's
    network path), from the lab registry's hub image, logged in with the site's password."""
    session = classic_lab.session()
    image = session.site.images.hub_base
    conns = classic_lab.connections(session)
    try:
        for host in ("node1", "hub"):
            t = conns.get(host)
            login = t.run(f"docker login -u {session.site.registry.username} --password-stdin "
                          f"{session.site.registry.url}", sudo=True, stdin=session.secrets.get("registry_password") + "\n")
            assert login.ok, login.output[-300:]
            pulled = t.run(f"docker pull -q {image}", sudo=True, timeout=600)
            assert pulled.ok, pulled.output[-300:]
    finally:
        conns.close()
    return f"docker run --rm {image}"


@pytest.fixture
def nfs_listener(classic_lab):
    """Something answering on HUB:2049 (the lab's kernel has no nfsd), so a refusal means the guard."""
    ip = classic_lab.ip("hub")
    ssh(classic_lab, "hub", f"systemd-run --unit hubwizard-test-2049 python3 -m http.server 2049 --bind {ip}")
    for _ in range(20):
        if ssh(classic_lab, "hub", f"curl -s -o /dev/null --max-time 2 http://{ip}:2049/", check=False).ok:
            break
    yield
    ssh(classic_lab, "hub", "systemctl stop hubwizard-test-2049", check=False)


def test_consul_and_nfs_are_reached_by_the_hosts_not_by_containers(classic_lab, container_prefix, nfs_listener):
    """Issue 12 item 6 (and the classic /home export): from a container on a node, HUB:8500
    and HUB:2049 refuse; from the node's host as root (what `swarm join` and autofs use) they
    answer; a non-root account on the node is refused Consul."""
    from hubwizard.actions.classic import site_users

    host = _probe(classic_lab, "node1", "", 8500, 2049, 22)
    print(f"\nfrom node1's host: {host}")
    assert host == {"8500": "connected", "2049": "connected", "22": "connected"}
    leader = ssh(classic_lab, "node1", f"curl -fsS --max-time 5 http://{classic_lab.ip('hub')}:8500/v1/status/leader")
    assert leader.stdout.strip().strip('"')
    user = site_users(classic_lab.session().site)[0]  # an account on the node, not root
    as_user = _probe(classic_lab, "node1", f"runuser -u {user} --", 8500, 2049, 22)
    print(f"as {user} on node1's host: {as_user}")
    assert as_user["8500"].startswith("failed") and as_user["22"] == "connected", as_user
    for where in ("node1", "hub"):
        got = _probe(classic_lab, where, container_prefix, 8500, 2049, 22)
        print(f"from a container on {where}: {got}")
        assert got["22"] == "connected"  # the network works; only the guarded ports refuse
        assert got["8500"].startswith("failed") and got["2049"].startswith("failed"), got


def test_a_stranger_cannot_reach_consul(classic_lab):
    """This machine is on the lab's network but not a cluster host: refused at the hub."""
    import socket

    with pytest.raises(OSError):
        socket.create_connection((classic_lab.ip("hub"), 8500), timeout=5).close()
    socket.create_connection((classic_lab.ip("hub"), 22), timeout=5).close()


def test_the_consul_guard_comes_back_when_docker_restarts(classic_lab):
    from tests.integration.classic_lab import START_DOCKERD

    ssh(classic_lab, "node1", "systemctl stop docker.socket docker.service && " + START_DOCKERD)
    hub_ip = classic_lab.ip("hub")
    check = ("iptables -w -C DOCKER-USER -j HUBWIZARD-CONSUL-FWD && iptables -w -C HUBWIZARD-CONSUL-FWD -p tcp -m "
             f"conntrack --ctstate NEW --ctorigdst {hub_ip} --ctorigdstport 8500 -j REJECT --reject-with tcp-reset")
    import time

    for _ in range(30):
        if ssh(classic_lab, "node1", check, check=False).ok:
            break
        time.sleep(2)
    else:
        raise AssertionError("the Consul guard's rules did not come back after Docker restarted on node1")


def test_before_the_fix_a_server_cert_with_client_auth_did_drive_another_engine(classic_lab):
    """The same attack with a node cert as hubwizard issued it before (serverAuth + clientAuth):
    it succeeds, so the refusal above is the certificates' doing."""
    from hubwizard.actions import tls

    ca = tls.SiteCA(classic_lab.tls_dir, "classic-site")
    old = ca.issue("node1 docker", ips=[classic_lab.ip("node1")], dns=["node1"], role=tls.MANAGER)
    conns = classic_lab.connections()
    try:
        node = conns.get("node1")
        for name, data, mode in (("ca.pem", old.ca, 0o644), ("cert.pem", old.cert, 0o644), ("key.pem", old.key, 0o600)):
            node.put(data, f"{LENT}/{name}", mode=mode, sudo=True)
        res = _docker_ps(classic_lab, "node1", LENT_CERT, "node2", 2376)
        assert res.ok and "CONTAINER ID" in res.output, res.output
    finally:
        conns.get("node1").run(f"rm -rf {LENT}", sudo=True)
        conns.close()


def test_without_the_guard_a_container_reaches_consul_and_verify_says_so(classic_lab, container_prefix):
    from hubwizard.session import open_site

    try:
        ssh(classic_lab, "node1", "iptables -w -F HUBWIZARD-CONSUL-FWD")
        got = _probe(classic_lab, "node1", container_prefix, 8500)
        print(f"\nwithout the guard, from a container on node1: {got}")
        assert got["8500"] == "connected"
        session = open_site(classic_lab.site_path, prompt=None)
        engine = session.engine(lambda e: None)
        try:
            summary = engine.run("verify", only="classic-consul-guard", hosts={"node1"})
        finally:
            engine.conns.close()
        (result,) = summary.results
        assert result.status == "failed" and "rule(s) missing" in result.output_tail, result
    finally:
        ssh(classic_lab, "node1", "systemctl restart hubwizard-consul-guard")
    assert _probe(classic_lab, "node1", container_prefix, 8500)["8500"].startswith("failed")
