"""Issue 13 items 5 and 7 and issue 17's teardown, on a real 1+1 lab (container machines).

- verify's NFS test writes leave no file in the users' storage root (nor in .hubwizard-test),
  run after run, also when an older run left some behind;
- the container lab keeps users' homes off NFS only because its site file says so
  ([storage] lab_without_nfs_client): verify says "cannot check here ... NOT on NFS";
- teardown goes through the engine (host lock, swarm_leave/swarm_left): both hosts leave the swarm.
Wall times print with -s.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.integration.lab_fixture import running_lab, unique_name
from tests.swarm_lab import hubwizard

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(3600)]

STRAYS = "find /var/nfs -maxdepth 2 \\( -name '.hubwizard-test-*' -o -name '.hubwizard-mount-*' \\) -print"


def ssh(lab, host: str, command: str) -> subprocess.CompletedProcess:
    rec = lab.record
    return subprocess.run(
        ["ssh", "-i", rec["key"], "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={rec['known_hosts']}", f"root@{rec['machines'][host]['ip']}", command],
        capture_output=True, text=True, timeout=120)


def timed(what: str, *args: str) -> subprocess.CompletedProcess:
    t0 = time.monotonic()
    res = hubwizard(*args)
    print(f"\n[time] {what}: {time.monotonic() - t0:.0f} s (exit {res.returncode})")
    return res


def test_verify_leaves_no_probe_file_and_teardown_leaves_the_swarm(tmp_path):
    with running_lab(tmp_path, unique_name("pf"), nodes=1) as lab:
        site = str(lab.site_path)
        assert "lab_without_nfs_client = true" in lab.site_path.read_text()
        res = timed("apply", "apply", "-c", site, "--yes")
        assert res.returncode == 0, res.stdout[-4000:] + res.stderr
        # what an older hubwizard left behind, in the root and in the test folder
        ssh(lab, "hub", "touch /var/nfs/.hubwizard-test-node1-0ld /var/nfs/.hubwizard-test/.hubwizard-test-node1-0ld")
        for run in (1, 2):
            res = timed(f"verify {run}", "verify", "-c", site)
            assert res.returncode == 0, res.stdout[-4000:]
            assert "test write through NFS" in res.stdout
            strays = ssh(lab, "hub", STRAYS)
            assert strays.returncode == 0 and strays.stdout.strip() == "", strays.stdout
        lines = [line for line in res.stdout.splitlines() if "NOT on NFS" in line]
        assert lines and all(line.split()[0] == "skip" for line in lines), res.stdout[-3000:]
        res = timed("teardown", "teardown", "-c", site, "--yes")
        assert res.returncode == 0, res.stdout + res.stderr
        for host in ("hub", "node1"):
            assert f"{host:<10} left the swarm" in res.stdout, res.stdout
            state = ssh(lab, host, "docker info --format '{{.Swarm.LocalNodeState}}'").stdout.strip()
            assert state == "inactive", (host, state)
