"""`lab up --vm` for real: qemu VMs with Debian's kernel, then the swarm-mode storage steps on them.

Why these checks: the container lab's kernel has no NFS and no XFS quotas, so kernel nfsd, NFS
volumes and quota readback never ran; here they do (issue 13). One lab for the module, brought
down by the last test (and by the fixture whatever happens), which proves nothing is left.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hubwizard.lab import vm, vmnet
from tests.integration.lab_fixture import unique_name
from tests.vm.conftest import hubwizard
from tests.vm.labtools import CHECK_USER, STEPS, apply_step, assert_down, hub_api, on, quota_hard_kib, start_server, stop_server

pytestmark = [pytest.mark.vm, pytest.mark.timeout(3600)]


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
        ("node2", "running", "yes"),
    }


@pytest.mark.parametrize("step", STEPS)
def test_swarm_mode_step_applies_on_real_kernels(vm_lab: dict, step: str) -> None:
    done = hubwizard("apply", "-c", str(vm_lab["site"]), "--yes", "--only", step, timeout=1800)
    assert done.returncode == 0, f"apply --only {step}:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"


def _hub_endpoint_mode(lab: dict) -> str:
    return _hub_service(lab)[0]


def _hub_service(lab: dict) -> list[str]:
    """The hub service's endpoint mode, ID and spec version (a new version: the spec was changed)."""
    done = on(lab, "hub", "docker service inspect jupyterhub --format '{{.Spec.EndpointSpec.Mode}} {{.ID}} {{.Version.Index}}'")
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.split()


def test_the_hub_service_has_a_virtual_ip_where_every_kernel_has_ipvs(vm_lab: dict) -> None:
    """Issue 13 item 6: the VM lab's kernel has IPVS on every host, so [swarm] endpoint_mode
    "auto" gives the hub (and users' servers) a virtual IP; plan says so in one line."""
    assert _hub_endpoint_mode(vm_lab) == "vip"
    plan = hubwizard("plan", "-c", str(vm_lab["site"]), "--only", "hub-service", timeout=900)
    assert "endpoint mode: vip (every host has IPVS)" in plan.stdout, plan.stdout[-2000:] + plan.stderr[-1000:]


def test_a_dnsrr_hub_converges_to_vip_in_place_and_then_stays(vm_lab: dict) -> None:
    """A hub created with dnsrr (an older hubwizard, or endpoint_mode = "dnsrr") becomes vip on
    re-apply by `docker service update`, and the apply after that changes nothing."""
    site = Path(vm_lab["site"])
    text = site.read_text()
    try:
        site.write_text(text + '\n[swarm]\nendpoint_mode = "dnsrr"\n')
        for step in ("hub-image", "hub-service"):
            apply_step(vm_lab, step)
        assert _hub_endpoint_mode(vm_lab) == "dnsrr"
    finally:
        site.write_text(text)
    _, dnsrr_id, _ = _hub_service(vm_lab)
    apply_step(vm_lab, "hub-image")
    apply_step(vm_lab, "hub-service")
    mode, vip_id, version = _hub_service(vm_lab)
    assert (mode, vip_id) == ("vip", dnsrr_id)  # the same service, updated in place
    again = apply_step(vm_lab, "hub-service")
    assert "unchanged  hub" in again, again[-2000:]
    assert _hub_service(vm_lab) == ["vip", vip_id, version]


def test_kernel_nfsd_exports_the_storage_path(vm_lab: dict) -> None:
    done = on(vm_lab, "hub", "systemctl is-active nfs-kernel-server && exportfs -v")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "/var/nfs" in done.stdout and "all_squash" in done.stdout


def test_verify_passes_the_storage_steps_and_quotas(vm_lab: dict) -> None:
    done = hubwizard("verify", "-c", str(vm_lab["site"]), "--json", timeout=1800)
    report = json.loads(done.stdout)
    steps = {s["id"]: s for s in report.get("steps", [])} if isinstance(report, dict) else {}
    for step in ("storage", "nfs-guard", "storage-clients", "quotas"):
        assert step in steps, done.stdout[-3000:]
        assert steps[step]["status"] == "ok", json.dumps(steps[step], indent=1)[-3000:]
    assert "endpoint mode: vip (every host has IPVS)" in done.stdout  # the hub service's check, issue 13 item 6


USER, QUOTA = "alice", "20M"
VOLUME = "jupyterhub-user-" + USER  # the name and options the hub's spawner gives a user's volume


def _nfs_volume(lab: dict) -> str:
    """Docker's local driver, type nfs, to the hub's export: what a user's server gets (jupyterhub_config)."""
    hub_ip = lab["record"]["machines"]["hub"]["ip"]
    return (f"docker volume rm -f {VOLUME} >/dev/null 2>&1; docker volume create --driver local --opt type=nfs "
            f"--opt o=addr={hub_ip},rw,nfsvers=4 --opt device=:/var/nfs/{USER} {VOLUME} >/dev/null")


def _in_container(lab: dict, host: str, script: str) -> subprocess.CompletedProcess[str]:
    """A jovyan (1000:100) container with the user's NFS volume at ~/work, removed afterwards."""
    tarball = "/opt/hubwizard/busybox.tar"  # baked into the VM image: no registry is reachable from a VM lab
    image = f"docker image inspect lab/busybox >/dev/null 2>&1 || docker import {tarball} lab/busybox >/dev/null"
    run = f"docker run --rm -u 1000:100 -v {VOLUME}:/home/jovyan/work lab/busybox sh -c '{script}'"
    return on(lab, host, f"{image} && {_nfs_volume(lab)} && {run}; rc=$?; docker volume rm -f {VOLUME} >/dev/null; exit $rc")


def test_a_users_file_written_on_the_node_persists_over_nfs_with_its_quota(vm_lab: dict) -> None:
    """Issue 13's acceptance, at the storage layer: write on the node, container gone, read on the hub."""
    prepare = on(vm_lab, "hub", f"install -d -o 1000 -g 100 -m 0755 /var/nfs/{USER} && "
                                f"/usr/local/sbin/hubwizard-set-quota /var/nfs/{USER} {QUOTA}")
    assert prepare.returncode == 0, prepare.stdout + prepare.stderr
    wrote = _in_container(vm_lab, "node1", "echo persisted > /home/jovyan/work/acceptance.txt && id -u")
    assert wrote.returncode == 0, wrote.stdout + wrote.stderr
    read = _in_container(vm_lab, "hub", "cat /home/jovyan/work/acceptance.txt")
    assert read.returncode == 0 and read.stdout.strip() == "persisted", read.stdout + read.stderr
    owner = on(vm_lab, "hub", f"stat -c %u:%g /var/nfs/{USER}/acceptance.txt && cat /var/nfs/{USER}/acceptance.txt")
    assert owner.stdout.split() == ["1000:100", "persisted"], owner.stdout + owner.stderr


def test_a_write_beyond_the_users_quota_fails_and_the_readback_shows_the_limit(vm_lab: dict) -> None:
    over = _in_container(vm_lab, "node1", "dd if=/dev/zero of=/home/jovyan/work/big bs=1M count=40 2>&1")
    assert over.returncode != 0, over.stdout
    assert "quota exceeded" in over.stdout.lower() or "no space left" in over.stdout.lower(), over.stdout
    assert quota_hard_kib(vm_lab, "hub", USER) == 20 * 1024  # hard limit, KiB
    on(vm_lab, "hub", f"rm -f /var/nfs/{USER}/big")



def test_a_notebook_file_follows_its_user_to_the_other_node(vm_lab: dict) -> None:
    """Issue 13's acceptance through Jupyter: write through the contents API, stop, drain that
    node, start on the other one, read it back; the file is on the NFS host with the user's uid,
    and the quota the first spawn set reads back."""
    status, body = hub_api(vm_lab, "POST", f"/hub/api/users/{CHECK_USER}")
    assert status in (201, 409), f"{status} {body[:300]}"
    stop_server(vm_lab)  # a server left by an earlier run would not move
    first = start_server(vm_lab)
    text = f"persisted from {first}"
    status, body = hub_api(vm_lab, "PUT", f"/user/{CHECK_USER}/api/contents/acceptance.txt",
                           {"type": "file", "format": "text", "content": text})
    assert status in (200, 201), f"{status} {body[:500]}"
    stop_server(vm_lab)
    drained = on(vm_lab, "hub", f"docker node update --availability drain {first}")
    assert drained.returncode == 0, drained.stderr
    try:
        second = start_server(vm_lab)
        assert second != first, f"the server came back on {second}, the drained node"
        status, body = hub_api(vm_lab, "GET", f"/user/{CHECK_USER}/api/contents/acceptance.txt?type=file&format=text")
        assert status == 200 and json.loads(body)["content"] == text, f"{status} {body[:500]}"
        stop_server(vm_lab)
    finally:
        on(vm_lab, "hub", f"docker node update --availability active {first}")
    owner = on(vm_lab, "hub", f"stat -c %u:%g /var/nfs/{CHECK_USER}/acceptance.txt && cat /var/nfs/{CHECK_USER}/acceptance.txt")
    assert owner.stdout.split("\n", 1) == ["1000:100", text], owner.stdout + owner.stderr
    assert quota_hard_kib(vm_lab, "hub", CHECK_USER) == 100 * 1024  # the site's default, 100M, in KiB


def test_down_leaves_no_qemu_tap_or_bridge(vm_lab: dict) -> None:
    assert_down(vm_lab["name"], [m["pid"] for m in vm_lab["record"]["machines"].values()])


def test_an_interrupted_lab_up_removes_its_vm_tap_and_bridge(vm_enabled: None, tmp_path: Path) -> None:
    """SIGTERM while the VM boots (a CI timeout, kill PID): the cleanup runs at once, nothing is left."""
    name = unique_name("vmi")
    up = subprocess.Popen(["hubwizard", "lab", "up", "--vm", "--name", name, "--nodes", "0", "-o", str(tmp_path / "s.toml")],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        pidfile = vm.vm_dir(name) / "hub" / "qemu.pid"
        deadline = time.monotonic() + 600
        while not pidfile.exists() and up.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
        assert pidfile.exists(), "qemu never started"
        qemu = int(pidfile.read_text())
        up.send_signal(signal.SIGTERM)
        output, _ = up.communicate(timeout=120)
        assert up.returncode == 1, output
        assert "interrupted" in output
        assert not Path(f"/proc/{qemu}/cmdline").exists() or b"qemu" not in Path(f"/proc/{qemu}/cmdline").read_bytes()
        assert vmnet.taps_of(name) == [] and not vmnet.exists(vmnet.bridge_name(name))
    finally:
        if up.poll() is None:
            up.kill()
        hubwizard("lab", "down", "--name", name, timeout=300)
