"""Issue 13 item 4: storage.server is a dedicated NFS host, not the hub; spawns get their folder there.

A lab of a hub, one worker and a dedicated NFS host (`lab up --nfs-host`: a machine "nfs",
role = "nfs", storage.server = "nfs", its /var/nfs on a volume as the hub's) is converged
with `hubwizard apply` and checked with `hubwizard verify` (step storage-host runs the hub's
key against the folder helper).
A real user's server is then spawned through the hub API: the hub's pre_spawn_hook must
have made STORAGE/USER on the NFS host, owned by jovyan (1000:100), and not on the hub.
The forced command must refuse anything but a folder name, even with the hub's own key.

The container lab's kernels have no NFS client ([storage] lab_without_nfs_client): users'
volumes are not mounted here, so this proves the folder and its owner, not files through NFS
(that needs `lab up --vm`, issue 13 items 1-3). Quotas are off in this lab (no XFS).

Set HUBWIZARD_NFSHOST_LAB=NAME:SITE_PATH to run against a lab of your own that the site
already makes so (kept afterwards). Wall times print with -s.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.swarm_lab import hubwizard

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(5400)]

USER = "hubwizardcheck"  # the one user hubwizard's API token may create and start (its scopes)
STORAGE = "/var/nfs"
NFS_MACHINE = "nfs"  # the machine `lab up --nfs-host` adds


@dataclass
class NfsHostLab:
    name: str
    site: Path
    record: dict[str, Any]
    apply: subprocess.CompletedProcess
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


def timed(label: str, *args: str) -> subprocess.CompletedProcess:
    t0 = time.monotonic()
    res = hubwizard(*args)
    print(f"\n[time] {label}: {time.monotonic() - t0:.0f} s (exit {res.returncode})")
    return res


@pytest.fixture(scope="module")
def nfshost(tmp_path_factory) -> Iterator[NfsHostLab]:
    from hubwizard.lab import lifecycle as lab_mod

    own = os.environ.get("HUBWIZARD_NFSHOST_LAB")
    if own:
        name, site = own.split(":", 1)
        yield NfsHostLab(name, Path(site), lab_mod.load_record(name), timed("apply", "apply", "-c", site, "--yes"),
                         timed("verify", "verify", "-c", site))
        return
    from tests.integration.lab_fixture import unique_name

    name = unique_name("nfsh")
    site = tmp_path_factory.mktemp("nfshost") / "site.toml"
    try:
        up = timed("lab up (hub + node + NFS host)", "lab", "up", "--name", name, "--nodes", "1", "--nfs-host",
                   "-o", str(site))
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-2000:]
        assert 'server = "nfs"' in site.read_text()
        apply = timed("apply from fresh machines", "apply", "-c", str(site), "--yes")
        yield NfsHostLab(name, site, lab_mod.load_record(name), apply, timed("verify", "verify", "-c", str(site)))
    finally:
        hubwizard("lab", "down", "--name", name, timeout=900)


def _api(lab: NfsHostLab, method: str, path: str) -> Any:
    from hubwizard.actions.hub_web import https
    from hubwizard.core.config import load_site

    token = tomllib.loads(lab.site.with_name(lab.site.stem + ".secrets.toml").read_text())["hub_api_token"]
    return https(load_site(lab.site), method, path, token=token)


@pytest.fixture(scope="module")
def spawned(nfshost: NfsHostLab) -> Iterator[str]:
    """USER's server, spawned by the hub; stopped, deleted and its folder removed afterwards."""
    t0 = time.monotonic()
    assert _api(nfshost, "POST", f"/hub/api/users/{USER}").status in (201, 409)
    assert _api(nfshost, "POST", f"/hub/api/users/{USER}/server").status in (201, 202, 400)
    try:
        for _ in range(120):
            server = (_api(nfshost, "GET", f"/hub/api/users/{USER}").json() or {}).get("servers", {}).get("")
            if server and server.get("ready"):
                break
            time.sleep(3)
        else:
            logs = nfshost.ssh(nfshost.hub, "docker service logs --tail 40 jupyterhub 2>&1").stdout
            raise AssertionError(f"{USER}'s server did not become ready; hub log tail:\n{logs[-3000:]}")
        print(f"\n[time] spawn {USER}'s server: {time.monotonic() - t0:.0f} s")
        yield USER
    finally:
        with contextlib.suppress(OSError):
            _api(nfshost, "DELETE", f"/hub/api/users/{USER}/server")
            for _ in range(40):
                reply = _api(nfshost, "GET", f"/hub/api/users/{USER}")
                if reply.status == 404 or not (reply.json() or {}).get("servers"):
                    break
                time.sleep(3)
            _api(nfshost, "DELETE", f"/hub/api/users/{USER}")
        nfshost.ssh(NFS_MACHINE, f"rm -rf {STORAGE}/{USER}")


def test_apply_and_verify_pass_with_a_dedicated_nfs_host(nfshost):
    assert nfshost.apply.returncode == 0, nfshost.apply.stdout[-4000:] + nfshost.apply.stderr[-2000:]
    assert nfshost.verify.returncode == 0, nfshost.verify.stdout[-4000:] + nfshost.verify.stderr[-2000:]
    assert "storage-host" in nfshost.verify.stdout


def test_spawned_users_folder_is_on_the_nfs_host_owned_by_jovyan(nfshost, spawned):
    res = nfshost.ssh(NFS_MACHINE, f"stat -c %u:%g:%a {STORAGE}/{spawned}")
    assert res.returncode == 0, f"no {STORAGE}/{spawned} on the NFS host: {res.stderr}"
    assert res.stdout.strip() == "1000:100:755"
    assert nfshost.ssh(nfshost.hub, f"test ! -e {STORAGE}/{spawned}").returncode == 0, "made on the hub instead"


def test_the_hub_key_runs_nothing_but_the_folder_helper(nfshost):
    from hubwizard.actions import storage_host as sh

    base = " ".join(sh.ssh_command(nfshost_site(nfshost), nfshost.record["machines"][NFS_MACHINE]["ip"], "")[:-1])
    for word, code in [("'id; touch /tmp/pwned'", 2), ("'../etc'", 2), ("check", 0)]:
        res = nfshost.ssh(nfshost.hub, f"{base} {word}")
        assert res.returncode == code, (word, res.stdout, res.stderr)
    assert nfshost.ssh(NFS_MACHINE, "test ! -e /tmp/pwned").returncode == 0
    # restrict: no port forwarding either (the NFS host's own sshd banner must not come through)
    forward = base.replace("ssh ", "ssh -N -L 127.0.0.1:18022:127.0.0.1:22 ", 1)
    fwd = nfshost.ssh(nfshost.hub, f"{forward} & sleep 3; timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/18022; "
                                   "head -c 7 <&3'; kill $! 2>/dev/null; true")
    assert "SSH-2.0" not in fwd.stdout


def nfshost_site(lab: NfsHostLab) -> Any:
    from hubwizard.core.config import load_site

    return load_site(lab.site)
