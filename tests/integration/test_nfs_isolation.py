"""Issue 12 item 2, attempted for real: a student's server must not reach the NFS server.

A lab of a hub (also the NFS server, nfs-ganesha) and one worker is brought up and converged
with `hubwizard apply`. A real user's server is spawned through the hub API (as the end-to-end
check does): SwarmSpawner runs it on the worker, on the overlay network users' servers use.
From inside that container, as its user, the attack of the issue is tried:
  - a TCP connect to NFS_SERVER:2049 (nfsd) and :111 (rpcbind), a UDP portmapper NULL call
    to :111, and `nfs-ls 'nfs://NFS_SERVER/var/nfs?uid=0'` (the worker's own libnfs tools
    copied into the container, claiming root as AUTH_SYS lets any client do);
  - all must fail, while a connect to the same server's port 22 succeeds (the container has
    a network; only NFS is closed to it).
Then the guard's jump is removed on the worker and the same attack succeeds (the container
lists the share, claiming root): what the guard stops, and that this test would catch its absence; verify
fails while it is missing; restarting the guard's unit closes it again.
From the worker's host (outside containers) the share still works: nfs-ls and the storage
step's own test write (step storage-clients, in `hubwizard verify`). A container on the NFS
server itself (the hub service's) cannot reach it either (the INPUT path). Restarting Docker
re-applies the guard; teardown removes it from every host.

Set HUBWIZARD_NFSISO_LAB=NAME:SITE_PATH to run against a converged lab of your own (kept).
Wall times print with -s.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.swarm_lab import hubwizard

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(5400)]

USER = "student1"  # a student of the lab's OpenID provider: logs in and starts their own server
PATH = "/var/nfs"

# run inside the user's container (python3 is in every single-user image)
ATTACK = r"""
import json, socket, struct, sys
ip = sys.argv[1]
out = {}
for port in (2049, 111, 22):
    s = socket.socket()
    s.settimeout(8)
    try:
        s.connect((ip, port))
        out[f"tcp/{port}"] = "connected"
    except OSError as exc:
        out[f"tcp/{port}"] = f"failed: {exc}"
    finally:
        s.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(5)
try:  # ONC RPC call: portmapper (100000) v2, procedure 0 (NULL), AUTH_NULL
    u.sendto(struct.pack(">10I", 0x4857, 0, 2, 100000, 2, 0, 0, 0, 0, 0), (ip, 111))
    data = u.recv(512)
    out["udp/111"] = "answered" if data[:4] == struct.pack(">I", 0x4857) else "odd answer"
except OSError as exc:
    out["udp/111"] = f"failed: {exc}"
print(json.dumps(out))
"""


@dataclass
class NfsLab:
    name: str
    site: Path
    record: dict[str, Any]
    apply: subprocess.CompletedProcess
    reapply: subprocess.CompletedProcess
    verify: subprocess.CompletedProcess

    def ssh(self, host: str, command: str, timeout: float = 180) -> subprocess.CompletedProcess:
        ip = self.record["machines"][host]["ip"]
        return subprocess.run(
            ["ssh", "-i", self.record["key"], "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
             "-o", f"UserKnownHostsFile={self.record['known_hosts']}", f"root@{ip}", command],
            capture_output=True, text=True, timeout=timeout)

    @property
    def hub(self) -> str:
        return next(h for h, m in self.record["machines"].items() if m.get("role") == "hub")

    @property
    def worker(self) -> str:
        return next(h for h, m in self.record["machines"].items() if m.get("role") == "node" and not m.get("spare"))

    @property
    def nfs_ip(self) -> str:
        return self.record["machines"][self.hub]["ip"]


def timed(label: str, *args: str) -> subprocess.CompletedProcess:
    t0 = time.monotonic()
    res = hubwizard(*args)
    print(f"\n[time] {label}: {time.monotonic() - t0:.0f} s (exit {res.returncode})")
    return res


@pytest.fixture(scope="module")
def nfslab(tmp_path_factory) -> Iterator[NfsLab]:
    from hubwizard.lab import lifecycle as lab_mod

    own = os.environ.get("HUBWIZARD_NFSISO_LAB")
    if own:
        name, site = own.split(":", 1)
        record = lab_mod.load_record(name)
        apply = timed("apply", "apply", "-c", site, "--yes")
        yield NfsLab(name, Path(site), record, apply, timed("re-apply", "apply", "-c", site, "--yes", "--json"),
                     timed("verify", "verify", "-c", site))
        return
    from tests.integration.lab_fixture import unique_name

    name = unique_name("nfs")
    site = tmp_path_factory.mktemp("nfsiso") / "site.toml"
    try:
        up = timed("lab up (1 hub + 1 node)", "lab", "up", "--name", name, "--nodes", "1", "-o", str(site))
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-2000:]
        text = site.read_text()
        if 'provider = "dummy"' in text and "i_understand_anyone_can_log_in" not in text:
            # a lab site written before the dummy login needed saying so (issue 12 item 1)
            site.write_text(text.replace('provider = "dummy"', 'provider = "dummy"\ni_understand_anyone_can_log_in = true'))
        apply = timed("apply from fresh machines", "apply", "-c", str(site), "--yes")
        reapply = timed("converged re-apply", "apply", "-c", str(site), "--yes", "--json")
        verify = timed("verify", "verify", "-c", str(site))
        yield NfsLab(name, site, lab_mod.load_record(name), apply, reapply, verify)
    finally:
        hubwizard("lab", "down", "--name", name, timeout=900)


class _Student:
    """USER as a browser has them: logged in through the lab's OpenID provider, the hub's REST API
    with the session's cookie and XSRF token (as JupyterLab's Start does). The check's API token
    changes only its own test user (SECURITY.md), so a student acts as themselves."""

    def __init__(self, lab: NfsLab) -> None:
        from hubwizard.core.config import load_site
        from tests.lab_web import LabHub, oidc_login, session

        self.hub = LabHub(lab.site, load_site(lab.site))
        self.s = session(self.hub)
        home = oidc_login(self.s, self.hub, USER)
        assert home.status_code == 200, f"{USER} could not log in: {home.status_code} at {home.url}"

    def api(self, method: str, path: str) -> Any:
        xsrf = self.s.cookies.get("_xsrf", path="/hub/") or self.s.cookies.get("_xsrf") or ""
        return self.s.request(method, f"{self.hub.url}/hub/api{path}", timeout=60,
                              headers={"X-XSRFToken": xsrf, "Referer": f"{self.hub.url}/hub/home"})


def _user_container(lab: NfsLab) -> str:
    """The id of USER's server container on the worker (found by the JUPYTERHUB_USER it runs with)."""
    find = ("for c in $(docker ps -q); do docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' \"$c\" "
            f"| grep -qx JUPYTERHUB_USER={USER} && echo \"$c\"; done")
    for _ in range(60):
        out = lab.ssh(lab.worker, find).stdout.split()
        if out:
            return out[0]
        time.sleep(3)
    raise AssertionError(f"no container of {USER}'s server on {lab.worker}")


@pytest.fixture(scope="module")
def user_server(nfslab: NfsLab) -> Iterator[str]:
    """A real user's server, spawned by the hub on the worker; stopped and deleted afterwards."""
    t0 = time.monotonic()
    student = _Student(nfslab)
    assert student.api("POST", f"/users/{USER}/server").status_code in (201, 202, 400)
    try:
        for _ in range(120):
            reply = student.api("GET", f"/users/{USER}")
            server = (reply.json() or {}).get("servers", {}).get("") if reply.status_code == 200 else None
            if server and server.get("ready"):
                break
            time.sleep(3)
        else:
            raise AssertionError(f"{USER}'s server did not become ready")
        print(f"\n[time] spawn {USER}'s server: {time.monotonic() - t0:.0f} s")
        container = _user_container(nfslab)
        # the worker's own libnfs tools, copied in: what a student could bring in any way they like
        setup = (f"mkdir -p /tmp/nfstools && cp /usr/bin/nfs-ls /tmp/nfstools/ && "
                 f"cp -L $(ldd /usr/bin/nfs-ls | awk '/libnfs/ {{print $3}}') /tmp/nfstools/ && "
                 f"docker cp /tmp/nfstools {container}:/tmp/")
        res = nfslab.ssh(nfslab.worker, setup)
        assert res.returncode == 0, res.stderr
        yield container
    finally:
        with contextlib.suppress(OSError, AssertionError):  # teardown may have removed the hub already
            _stop_user(nfslab)


def _stop_user(lab: NfsLab) -> None:
    student = _Student(lab)
    student.api("DELETE", f"/users/{USER}/server")
    for _ in range(40):
        reply = student.api("GET", f"/users/{USER}")
        if reply.status_code != 200 or not (reply.json() or {}).get("servers"):
            break
        time.sleep(3)


def _attack(lab: NfsLab, container: str) -> tuple[dict[str, str], subprocess.CompletedProcess]:
    """From inside the user's container, as its user: raw connects, then nfs-ls claiming root."""
    res = lab.ssh(lab.worker, f"docker exec {container} python3 -c {shlex.quote(ATTACK)} {lab.nfs_ip}")
    assert res.returncode == 0, res.stdout + res.stderr
    probes = json.loads(res.stdout.strip().splitlines()[-1])
    url = shlex.quote(f"nfs://{lab.nfs_ip}{PATH}?uid=0&gid=0")
    ls = lab.ssh(lab.worker, f"docker exec -e LD_LIBRARY_PATH=/tmp/nfstools {container} "
                             f"timeout 60 /tmp/nfstools/nfs-ls {url}")
    print(f"\nfrom {USER}'s server: {probes}; nfs-ls exit {ls.returncode}: {(ls.stdout + ls.stderr).strip()[:300]}")
    return probes, ls


def test_apply_and_verify_pass_with_the_guard_on_every_host(nfslab):
    assert nfslab.apply.returncode == 0, nfslab.apply.stdout[-4000:] + nfslab.apply.stderr[-2000:]
    assert nfslab.verify.returncode == 0, nfslab.verify.stdout[-4000:] + nfslab.verify.stderr[-2000:]
    assert "== nfs-guard:" in nfslab.apply.stdout
    for host in (nfslab.hub, nfslab.worker):
        res = nfslab.ssh(host, "systemctl is-enabled hubwizard-nfs-guard && iptables -w -C DOCKER-USER -j "
                               "HUBWIZARD-NFS-FWD && iptables -w -C INPUT -j HUBWIZARD-NFS-IN")
        assert res.returncode == 0, f"{host}: {res.stdout}{res.stderr}"


def test_a_second_apply_leaves_the_guard_and_the_storage_unchanged(nfslab):
    assert nfslab.reapply.returncode == 0, nfslab.reapply.stdout[-3000:] + nfslab.reapply.stderr[-2000:]
    doc = json.loads(nfslab.reapply.stdout)
    steps = {s["id"]: s for s in doc["steps"]}
    for step in ("storage", "nfs-guard"):
        assert {r["status"] for r in steps[step]["hosts"].values()} == {"unchanged"}, steps[step]


def test_the_hub_makes_the_users_folder_owned_by_jovyan(nfslab, user_server):
    res = nfslab.ssh(nfslab.hub, f"stat -c %u:%g {PATH}/{USER}")
    assert res.stdout.strip() == "1000:100", res.stdout + res.stderr


def test_a_users_server_cannot_reach_the_nfs_server(nfslab, user_server):
    probes, ls = _attack(nfslab, user_server)
    assert probes["tcp/22"] == "connected", "control: the container reaches the NFS server's host at all"
    assert probes["tcp/2049"].startswith("failed"), probes
    assert probes["tcp/111"].startswith("failed"), probes
    assert probes["udp/111"].startswith("failed"), probes
    assert ls.returncode != 0
    assert ".hubwizard-test" not in ls.stdout and USER not in ls.stdout


def test_without_the_guard_the_same_attack_reads_every_home(nfslab, user_server):
    """The control: the attack works once the guard's jump is gone, so the test above can fail."""
    off = nfslab.ssh(nfslab.worker, "iptables -w -D DOCKER-USER -j HUBWIZARD-NFS-FWD")
    assert off.returncode == 0, off.stderr
    try:
        probes, ls = _attack(nfslab, user_server)
        assert probes["tcp/2049"] == "connected", probes
        # (the listing is the server's: nfs-ganesha may not show yet a folder the hub made behind its back)
        assert ls.returncode == 0 and ".hubwizard-test" in ls.stdout, ls.stdout + ls.stderr
        res = timed("verify, guard missing on the worker", "verify", "-c", str(nfslab.site))
        assert res.returncode == 1, res.stdout[-3000:]
        said = [line for line in res.stdout.splitlines() if "rule(s)" in line]
        print("\n".join(said))
        assert said and nfslab.worker in "\n".join(said)
    finally:
        on = nfslab.ssh(nfslab.worker, "systemctl restart hubwizard-nfs-guard")
        assert on.returncode == 0, on.stderr
    probes, ls = _attack(nfslab, user_server)
    assert probes["tcp/2049"].startswith("failed") and ls.returncode != 0


def test_a_container_on_the_nfs_server_cannot_reach_it(nfslab):
    """The INPUT path: the hub service's container runs on the NFS server itself."""
    find = "docker ps -q --filter label=com.docker.swarm.service.name=jupyterhub | head -1"
    hub_container = nfslab.ssh(nfslab.hub, find).stdout.strip()
    assert hub_container
    res = nfslab.ssh(nfslab.hub, f"docker exec {hub_container} python3 -c {shlex.quote(ATTACK)} {nfslab.nfs_ip}")
    probes = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"\nfrom the hub's container on the NFS server: {probes}")
    assert probes["tcp/22"] == "connected"
    assert probes["tcp/2049"].startswith("failed") and probes["tcp/111"].startswith("failed"), probes


def test_the_hosts_themselves_still_use_the_share(nfslab):
    res = nfslab.ssh(nfslab.worker, f"nfs-ls nfs://{nfslab.nfs_ip}{PATH}")
    assert res.returncode == 0 and ".hubwizard-test" in res.stdout, res.stdout + res.stderr
    res = timed("verify (the storage step's test write from the node's host)", "verify", "-c", str(nfslab.site))
    assert res.returncode == 0, res.stdout[-3000:]
    assert re.search(rf"pass\s+{nfslab.worker}\s+test write through NFS, read back on the server", res.stdout)


def test_the_guard_comes_back_when_docker_restarts(nfslab):
    _stop_user(nfslab)  # the user's server would not survive the restart
    res = nfslab.ssh(nfslab.worker, "systemctl restart docker", timeout=300)
    assert res.returncode == 0, res.stderr
    check = ("iptables -w -C DOCKER-USER -j HUBWIZARD-NFS-FWD && iptables -w -C INPUT -j HUBWIZARD-NFS-IN && "
             f"iptables -w -C HUBWIZARD-NFS-FWD -d {nfslab.nfs_ip} -p tcp --dport 2049 "
             "-j REJECT --reject-with tcp-reset")
    for _ in range(30):
        if nfslab.ssh(nfslab.worker, check).returncode == 0:
            break
        time.sleep(2)
    else:
        raise AssertionError("the guard's rules did not come back after Docker restarted")


def test_teardown_removes_the_guard_from_every_host(nfslab):
    res = timed("teardown", "teardown", "-c", str(nfslab.site), "--yes")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    assert "removed the NFS guard" in res.stdout
    for host in (nfslab.hub, nfslab.worker):
        gone = nfslab.ssh(host, "test ! -e /etc/systemd/system/hubwizard-nfs-guard.service && "
                                "! iptables -w -n -L HUBWIZARD-NFS-FWD >/dev/null 2>&1 && "
                                "! iptables -w -n -L HUBWIZARD-NFS-IN >/dev/null 2>&1")
        assert gone.returncode == 0, f"{host}: the guard is still there"
