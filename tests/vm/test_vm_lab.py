"""`lab up --vm` for real: qemu VMs with Debian's kernel, then the swarm-mode storage steps on them.

Why these checks: the container lab's kernel has no NFS and no XFS quotas, so kernel nfsd, NFS
volumes and quota readback never ran; here they do (issue 13). One lab for the module, brought
down by the last test (and by the fixture whatever happens), which proves nothing is left.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from hubwizard.lab import vm, vmnet
from tests.vm.conftest import hubwizard

pytestmark = [pytest.mark.vm, pytest.mark.timeout(3600)]
STEPS = ("preflight", "docker", "swarm-init", "swarm-join", "network", "storage", "quotas")


def on(lab: dict, host: str, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return vm.ssh(lab["record"], host, command, timeout=timeout)


def test_ssh_to_hub_and_node_with_the_labs_key(vm_lab: dict) -> None:
    for host in ("hub", "node1"):
        done = on(vm_lab, host, "hostname; uname -r; docker info -f '{{.ServerVersion}}'")
        assert done.returncode == 0, done.stderr
        name, kernel, _docker = done.stdout.split()
        assert name == host
        assert kernel.endswith("-cloud-amd64")


def test_hub_has_kernel_nfsd_and_a_pquota_xfs_at_the_storage_path(vm_lab: dict) -> None:
    done = on(vm_lab, "hub", "modprobe nfsd && lsmod | grep -w nfsd; mount | grep ' /var/nfs '")
    assert done.returncode == 0, done.stderr
    assert "nfsd" in done.stdout
    assert "xfs" in done.stdout and "prjquota" in done.stdout, done.stdout


def test_status_lists_the_vms(vm_lab: dict) -> None:
    done = hubwizard("lab", "status", "--name", vm_lab["name"], "--json", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["kind"] == "vm"
    assert {(m["name"], m["state"], m["sshd"]) for m in report["machines"]} == {
        ("hub", "running", "yes"),
        ("node1", "running", "yes"),
    }


@pytest.mark.parametrize("step", STEPS)
def test_swarm_mode_step_applies_on_real_kernels(vm_lab: dict, step: str) -> None:
    done = hubwizard("apply", "-c", str(vm_lab["site"]), "--yes", "--only", step, timeout=1800)
    assert done.returncode == 0, f"apply --only {step}:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"


def test_kernel_nfsd_exports_the_storage_path(vm_lab: dict) -> None:
    done = on(vm_lab, "hub", "systemctl is-active nfs-kernel-server && exportfs -v")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "/var/nfs" in done.stdout and "all_squash" in done.stdout


def test_verify_passes_storage_and_quotas(vm_lab: dict) -> None:
    done = hubwizard("verify", "-c", str(vm_lab["site"]), "--json", timeout=1800)
    report = json.loads(done.stdout)
    steps = {s["id"]: s for s in report.get("steps", [])} if isinstance(report, dict) else {}
    for step in ("storage", "quotas"):
        assert step in steps, done.stdout[-3000:]
        assert steps[step]["status"] in ("ok", "pass", "passed"), json.dumps(steps[step], indent=1)[-3000:]


def test_down_leaves_no_qemu_tap_or_bridge(vm_lab: dict) -> None:
    pids = [m["pid"] for m in vm_lab["record"]["machines"].values()]
    done = hubwizard("lab", "down", "--name", vm_lab["name"], timeout=300)
    assert done.returncode == 0, done.stderr
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or b"qemu" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert vmnet.taps_of(vm_lab["name"]) == []
    assert not vmnet.exists(vmnet.bridge_name(vm_lab["name"]))
    assert not vm.present(vm_lab["name"])
