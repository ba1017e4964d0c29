"""The classic (2016) track's homes for real: the hub's /home over kernel NFS, autofs on the nodes.

Why on VMs: the container lab's kernel has no NFS, so there classic-nfs-home only writes its
export file and classic-autofs cannot mount; here (Debian's kernel: nfsd, the NFS client,
autofs) a file written on the hub is listed by `ls -ln /home/USER` on a node with the same uid,
and a file written on the node lands in the hub's /home (issue 13 item 6). Consul and the
standalone Swarm manager stay lab stand-ins (no Docker Hub); verify says which checks did.

One `lab up --vm --track classic --nodes 1` for the module, always brought down; with
$HUBWIZARD_VM_LAB=NAME that running VM lab gets a classic site and is left up (reruns with -k).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubwizard.lab import vm
from hubwizard.lab.vmsite import CLASSIC_USERS
from tests.integration.lab_fixture import unique_name
from tests.vm.conftest import hubwizard

pytestmark = [pytest.mark.vm, pytest.mark.timeout(3600)]
# the classic storage steps, in the order of recipes/: export, guard, automount, same uids
STEPS = ("classic-nfs-home", "classic-nfs-guard", "classic-autofs", "classic-uids")
USER, UID = CLASSIC_USERS[0], 2001
TIMINGS: dict[str, float] = {}


def _classic_site_of(record: dict, site: Path) -> None:
    """A running VM lab's classic site beside its own, its record untouched (test_vm_lab reuses it)."""
    from hubwizard.core.secrets import write_secrets
    from hubwizard.lab.vmsite import write_vm_site

    write_vm_site(site, {**record, "track": "classic"})
    write_secrets(site, record["secrets"])


@pytest.fixture(scope="module")
def classic_vm(vm_enabled: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from hubwizard.lab.spec import load_record

    reuse = os.environ.get("HUBWIZARD_VM_LAB")
    name = reuse or unique_name("vmc")
    site = tmp_path_factory.mktemp("vmc") / f"{name}-classic.toml"
    started = time.monotonic()
    try:
        if reuse:
            record = load_record(reuse)
            assert record is not None and record.get("kind") == "vm", f"no VM lab named {reuse!r}"
            _classic_site_of(record, site)
        else:
            up = hubwizard("lab", "up", "--vm", "--track", "classic", "--name", name, "--nodes", "1", "-o", str(site))
            assert up.returncode == 0, f"lab up --vm --track classic failed:\n{up.stdout}\n{up.stderr}"
            TIMINGS["lab_up_s"] = round(time.monotonic() - started, 1)
            print(up.stdout)
            record = load_record(name)
            assert record is not None
        yield {"name": name, "site": site, "record": record}
    finally:
        print("timings:", json.dumps(TIMINGS))
        if not reuse:
            hubwizard("lab", "down", "--name", name, timeout=300)


def on(lab: dict, host: str, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return vm.ssh(lab["record"], host, command, timeout=timeout)


def as_user(lab: dict, host: str, command: str) -> subprocess.CompletedProcess[str]:
    """COMMAND as the test user: the export squashes root, as the tutorial's users work."""
    return on(lab, host, f"runuser -u {USER} -- sh -c '{command}'")


def nodes(lab: dict) -> list[str]:
    return [h for h, m in lab["record"]["machines"].items() if m["role"] == "node"]


def test_the_site_is_classic_with_stand_ins_for_the_images_only(classic_vm: dict) -> None:
    site = tomllib.loads(classic_vm["site"].read_text())
    assert site["site"]["track"] == "classic"
    assert site["storage"]["kind"] == "autofs" and site["storage"]["implementation"] == "kernel"
    assert site["classic"]["lab_stand_ins"] is True
    assert "lab_without_nfs_client" not in site["storage"]


def test_the_tutorials_users_get_one_uid_on_every_vm(classic_vm: dict) -> None:
    """As the tutorial's admin does by hand: the hub with home folders, the nodes without (autofs)."""
    for uid, user in enumerate(CLASSIC_USERS, start=UID):
        for host, machine in classic_vm["record"]["machines"].items():
            home = "-m" if machine["role"] == "hub" else "-M"
            made = on(classic_vm, host, f"id {user} >/dev/null 2>&1 || "
                                        f"{{ groupadd -g {uid} {user} && useradd {home} -u {uid} -g {uid} {user}; }}")
            assert made.returncode == 0, f"{host}: {made.stdout}{made.stderr}"
    # 0700 as Debian 12's adduser makes homes: with root squashed, root on a node cannot read them
    made = on(classic_vm, "hub", " && ".join(f"chmod 0700 /home/{user}" for user in CLASSIC_USERS))
    assert made.returncode == 0, made.stdout + made.stderr


@pytest.mark.parametrize("step", STEPS)
def test_classic_storage_step_applies_on_real_kernels(classic_vm: dict, step: str) -> None:
    started = time.monotonic()
    done = hubwizard("apply", "-c", str(classic_vm["site"]), "--yes", "--only", step, timeout=1800)
    TIMINGS[f"apply_{step}_s"] = round(time.monotonic() - started, 1)
    assert done.returncode == 0, f"apply --only {step}:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"


def test_the_hub_exports_home_with_kernel_nfsd_and_root_squash(classic_vm: dict) -> None:
    done = on(classic_vm, "hub", "systemctl is-active nfs-kernel-server && exportfs -v")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "/home" in done.stdout and "root_squash" in done.stdout and "no_root_squash" not in done.stdout
    assert "<world>" not in done.stdout, done.stdout  # the cluster's subnet only


def test_a_file_written_on_the_hub_is_listed_on_the_node_with_the_same_uid(classic_vm: dict) -> None:
    started = time.monotonic()
    wrote = as_user(classic_vm, "hub", f"echo from-hub > /home/{USER}/from-hub.txt")
    assert wrote.returncode == 0, wrote.stdout + wrote.stderr
    for node in nodes(classic_vm):
        listed = as_user(classic_vm, node, f"ls -ln /home/{USER} && cat /home/{USER}/from-hub.txt")
        assert listed.returncode == 0, f"{node}: {listed.stdout}{listed.stderr}"
        line = next((ln for ln in listed.stdout.splitlines() if ln.endswith(" from-hub.txt")), "")
        assert line.split()[2:4] == [str(UID), str(UID)], listed.stdout
        assert listed.stdout.strip().endswith("from-hub"), listed.stdout
    TIMINGS["hub_to_node_s"] = round(time.monotonic() - started, 1)


def test_a_file_written_on_the_node_lands_in_the_hubs_home(classic_vm: dict) -> None:
    node = nodes(classic_vm)[0]
    wrote = as_user(classic_vm, node, f"echo from-{node} > /home/{USER}/from-node.txt")
    assert wrote.returncode == 0, wrote.stdout + wrote.stderr
    seen = on(classic_vm, "hub", f"stat -c %u:%g /home/{USER}/from-node.txt && cat /home/{USER}/from-node.txt")
    assert seen.stdout.split() == [f"{UID}:{UID}", f"from-{node}"], seen.stdout + seen.stderr


def test_the_node_shows_an_autofs_and_an_nfs_mount_and_root_is_squashed(classic_vm: dict) -> None:
    hub_ip = classic_vm["record"]["machines"]["hub"]["ip"]
    node = nodes(classic_vm)[0]
    mounts = on(classic_vm, node, f"runuser -u {USER} -- ls /home/{USER} >/dev/null; "
                                  "findmnt -rn -o TARGET,FSTYPE,SOURCE; echo ---; mount")
    assert mounts.returncode == 0, mounts.stdout + mounts.stderr
    print(f"{node} mounts:\n" + "\n".join(ln for ln in mounts.stdout.splitlines() if "/home" in ln))
    table = [ln.split() for ln in mounts.stdout.split("---")[0].splitlines()]
    assert any(row[:2] == ["/home", "autofs"] for row in table), mounts.stdout
    nfs = [row for row in table if row[0] == f"/home/{USER}"]
    assert nfs and nfs[0][1].startswith("nfs") and nfs[0][2] == f"{hub_ip}:/home/{USER}", mounts.stdout
    root = on(classic_vm, node, f"ls /home/{USER} 2>&1 || touch /home/{USER}/written-by-root 2>&1")
    assert root.returncode != 0, f"root on {node} read a 0700 home on NFS: the export does not squash root"


def test_classic_verify_passes_the_storage_checks_and_names_the_stand_ins(classic_vm: dict) -> None:
    started = time.monotonic()
    done = hubwizard("verify", "-c", str(classic_vm["site"]), "--json", timeout=1800)
    TIMINGS["verify_s"] = round(time.monotonic() - started, 1)
    report = json.loads(done.stdout)
    steps = {s["id"]: s for s in report["steps"]}
    for step in STEPS:
        assert steps.get(step, {}).get("status") == "ok", json.dumps(steps.get(step), indent=1)[-3000:]
    stood_in = [c for c in report.get("checks", []) if c["name"] == "which checks ran on lab stand-ins"]
    assert stood_in, done.stdout[-3000:]
    detail = stood_in[0]["detail"]
    assert "classic-consul" in detail and "classic-manager" in detail, detail
    for real in ("classic-nfs-home", "classic-autofs"):  # real kernels: not stood in
        assert real not in detail, detail
