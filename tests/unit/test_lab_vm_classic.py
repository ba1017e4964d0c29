"""The classic site of a VM lab (`lab up --vm --track classic`): real NFS /home and autofs, stand-ins
only for the images a lab cannot pull (Consul, `swarm manage`)."""

from __future__ import annotations

from pathlib import Path

from hubwizard.core.config import load_site
from hubwizard.lab.spec import LabSpec
from hubwizard.lab.vmsite import CLASSIC_USERS, write_vm_site


def _record(tmp_path: Path, track: str) -> dict:
    (tmp_path / "id").write_text("key")
    return {
        "name": "vmc", "spec": LabSpec(name="vmc", nodes=1).__dict__, "subnet": "10.213.0.0/24",
        "key": str(tmp_path / "id"), "known_hosts": str(tmp_path / "known_hosts"), "storage_path": "/var/nfs",
        "secrets": {}, "registry": {"url": "10.213.0.1:32768"}, "track": track,
        "machines": {"hub": {"ip": "10.213.0.10", "role": "hub"}, "node1": {"ip": "10.213.0.11", "role": "node"}},
    }


def test_classic_vm_site_loads_with_kernel_nfs_autofs_and_stand_ins_for_images_only(tmp_path: Path) -> None:
    site = tmp_path / "vmc.toml"
    write_vm_site(site, _record(tmp_path, "classic"))
    loaded = load_site(site)
    assert loaded.site.track == "classic"
    assert loaded.storage.kind == "autofs" and loaded.storage.implementation == "kernel"
    assert not loaded.storage.lab_without_nfs_client  # the nodes mount /home for real
    assert loaded.classic.lab_stand_ins  # Consul and the Swarm manager: no Docker Hub in a lab
    assert loaded.hub.allowed_users == list(CLASSIC_USERS)
    assert "--track classic" in site.read_text().splitlines()[0]


def test_a_record_without_a_track_still_writes_the_swarm_mode_site(tmp_path: Path) -> None:
    record = _record(tmp_path, "swarm-mode")
    del record["track"]  # a VM lab brought up before --track existed
    site = tmp_path / "vms.toml"
    write_vm_site(site, record)
    loaded = load_site(site)
    assert loaded.site.track == "swarm-mode" and loaded.quotas.enabled


def test_track_classic_without_vm_is_bad_input_and_says_to_add_vm(capsys) -> None:
    from hubwizard.lab import cli

    assert cli.main(["up", "--track", "classic", "--name", "trackcheck"]) == 2
    assert "add --vm" in capsys.readouterr().err
