"""Pure parts of `lab up --vm`: names that fit Linux's limits, the site file, the VM's boot script."""

from __future__ import annotations

from pathlib import Path

from hubwizard.core.config import load_site
from hubwizard.lab import vm, vmnet
from hubwizard.lab.spec import LabSpec
from hubwizard.lab.vmimage import Kernel
from hubwizard.lab.vmsite import write_vm_site


def test_interface_names_fit_linux_and_differ_between_labs() -> None:
    long_a, long_b = "a" * 24, "a" * 23 + "b"
    for lab in ("x", long_a, long_b):
        assert len(vmnet.bridge_name(lab)) <= 15
        assert len(vmnet.tap_name(lab, 99)) <= 15
    assert vmnet.bridge_name(long_a) != vmnet.bridge_name(long_b)


def _record(tmp_path: Path) -> dict:
    spec = LabSpec(name="vmx", nodes=1)
    return {
        "name": "vmx", "spec": spec.__dict__, "subnet": "10.213.0.0/24", "key": str(tmp_path / "id"),
        "known_hosts": str(tmp_path / "known_hosts"), "storage_path": "/var/nfs", "secrets": {},
        "registry": {"url": "10.213.0.1:32768"},
        "machines": {"hub": {"ip": "10.213.0.10", "role": "hub"}, "node1": {"ip": "10.213.0.11", "role": "node"}},
    }


def test_site_file_says_kernel_nfs_and_quotas_and_loads(tmp_path: Path) -> None:
    site = tmp_path / "vmx.toml"
    (tmp_path / "id").write_text("key")
    write_vm_site(site, _record(tmp_path))
    loaded = load_site(site)
    assert loaded.storage.implementation == "kernel"
    assert loaded.quotas.enabled
    assert [h.address for h in loaded.hosts] == ["10.213.0.10", "10.213.0.11"]
    assert not loaded.storage.lab_without_nfs_client  # users' homes are real NFS volumes here


def test_site_file_names_the_registry_on_the_bridge_for_every_image(tmp_path: Path) -> None:
    site = tmp_path / "vmx.toml"
    (tmp_path / "id").write_text("key")
    write_vm_site(site, _record(tmp_path))
    loaded = load_site(site)
    assert loaded.registry.url == "10.213.0.1:32768" and loaded.registry.insecure
    assert loaded.docker.insecure_registries == ["10.213.0.1:32768"]
    images = (loaded.images.hub_base, loaded.images.hub, loaded.images.singleuser)
    assert all(i.startswith("10.213.0.1:32768/lab/") for i in images)


def test_setup_script_gives_identity_and_mounts_the_hubs_xfs_with_pquota() -> None:
    spec = LabSpec(name="vmx", nodes=1, user="admin", sudo_password=True)
    ips = {"hub": "10.213.0.10", "node1": "10.213.0.11"}
    secret = {"sudo_password": "pw"}
    script = vm._setup_script(spec, "hub", ips, "52:54:00:00:00:00", "10.213.0.1", "ssh-ed25519 AAA x", secret, True)
    assert "hostname hub" in script
    assert "Address=10.213.0.10/24" in script
    assert "mount -t xfs -o pquota /dev/vdc /var/nfs" in script
    assert "admin ALL=(ALL) ALL" in script and "NOPASSWD" not in script
    node = vm._setup_script(LabSpec(name="vmx"), "node1", ips, "m", "g", "k", {}, False)
    assert "/dev/vdc" not in node and "/root/.ssh/authorized_keys" in node


def test_qemu_runs_tcg_with_root_config_and_data_disks_in_order() -> None:
    kernel = Kernel("6.1.0-1-cloud-amd64", Path("/boot/vmlinuz"), Path("/boot/initrd"), Path("/lib/modules/x"))
    machine = {"dir": "/s/hub", "overlay": "/s/hub/root.qcow2", "config": "/s/hub/config.img", "data": "/s/hub/data.img",
               "memory_mb": 2048, "tap": "hwtx0", "mac": "52:54:00:00:00:00", "console": "/s/c", "pidfile": "/s/p"}
    args = vm.qemu_args(kernel, machine)
    assert args[args.index("-accel") + 1].startswith("tcg")
    drives = [args[i + 1] for i, a in enumerate(args) if a == "-drive"]
    assert [d.split(",")[0] for d in drives] == ["file=/s/hub/root.qcow2", "file=/s/hub/config.img", "file=/s/hub/data.img"]
    assert "apparmor=0" in args[args.index("-append") + 1]


def _nfs_host_record(tmp_path: Path) -> dict:
    record = _record(tmp_path)
    record["spec"] = LabSpec(name="vmx", nodes=1, nfs_host=True).__dict__
    record["machines"]["nfs"] = {"ip": "10.213.0.12", "role": "nfs"}
    return record


def test_with_a_dedicated_nfs_host_the_nfs_vm_gets_the_data_disk_not_the_hub() -> None:
    """Issue 13 item 4: users' folders are on the NFS host's XFS, so only it gets the raw disk."""
    spec = LabSpec(name="vmx", nodes=1, nfs_host=True)
    assert spec.hosts() == [("hub", "hub"), ("node1", "node"), ("nfs", "nfs")]
    assert [h for h, role in spec.hosts() if role == vm.storage_role(spec)] == ["nfs"]
    plain = LabSpec(name="vmx", nodes=1)
    assert [h for h, role in plain.hosts() if role == vm.storage_role(plain)] == ["hub"]


def test_every_vm_role_has_memory_enough_for_preflight() -> None:
    """A 1024 MiB guest shows ~972 MiB MemTotal, and preflight fails under 1024 (seen on the
    first `lab up --vm --nfs-host`): every role's VM keeps a margin for the kernel's share."""
    from hubwizard.actions.probes import MIN_MEM_MIB

    roles = {role for spec in (LabSpec(nodes=1, spares=1, nfs_host=True),) for _, role in spec.hosts()}
    assert roles == {"hub", "node", "spare", "nfs"}
    assert all(vm.MEMORY[role] >= MIN_MEM_MIB + 256 for role in roles), vm.MEMORY


def test_nfs_vm_site_names_the_nfs_host_as_storage_server_with_kernel_nfs_and_quotas(tmp_path: Path) -> None:
    site = tmp_path / "vmx.toml"
    (tmp_path / "id").write_text("key")
    write_vm_site(site, _nfs_host_record(tmp_path))
    text = site.read_text()
    assert 'server = "nfs"' in text and "--nfs-host" in text.splitlines()[0]
    loaded = load_site(site)
    assert loaded.storage.server == "nfs" and loaded.nfs_host.name == "nfs" and loaded.nfs_host.role == "nfs"
    assert [h.name for h in loaded.targets("nfs")] == ["nfs"]  # storage and quotas run there, not on the hub
    assert loaded.storage.implementation == "kernel" and loaded.quotas.enabled
    assert not loaded.storage.lab_without_nfs_client
    plain = tmp_path / "plain.toml"
    write_vm_site(plain, _record(tmp_path))
    assert "server =" not in plain.read_text() and load_site(plain).nfs_host.name == "hub"


def test_a_dedicated_nfs_host_is_refused_with_the_classic_track() -> None:
    import pytest

    from hubwizard.core.errors import ConfigError

    with pytest.raises(ConfigError, match="swarm-mode"):
        vm.check_spec(LabSpec(name="vmx", nfs_host=True), "classic")
    vm.check_spec(LabSpec(name="vmx", nfs_host=True), "swarm-mode")


def test_the_nfs_vms_setup_script_mounts_its_xfs_with_pquota() -> None:
    ips = {"hub": "10.213.0.10", "node1": "10.213.0.11", "nfs": "10.213.0.12"}
    spec = LabSpec(name="vmx", nodes=1, nfs_host=True)
    script = vm._setup_script(spec, "nfs", ips, "m", "10.213.0.1", "k", {}, True)
    assert "hostname nfs" in script and "Address=10.213.0.12/24" in script
    assert "mount -t xfs -o pquota /dev/vdc /var/nfs" in script
    assert "10.213.0.12 nfs" in script  # every VM resolves the NFS host's name
