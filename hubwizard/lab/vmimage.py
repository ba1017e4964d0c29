"""The root disk of `lab up --vm` machines: a Debian tree with its packages preinstalled, as ext4.

Why this shape (see shared/LAB.md, "Real kernels"): packages are installed at build time by
debootstrap because apt inside a TCG guest is very slow; the disk is made with
``mkfs.ext4 -d TREE`` so nothing is mounted on this host; the kernel is Debian's cloud kernel
from this host's /boot (it has NFS, NFSD, XFS quotas, IPVS, VXLAN as modules), its modules
copied into the tree. The image is named by a content hash of its recipe and kept in the
cache, so labs share one read-only base and each VM writes to a qcow2 overlay of its own.
Each VM learns who it is (hostname, address, keys, data disk) at boot from a tiny config
disk that `hubwizard-vmconfig.service` (baked here) mounts and runs.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hubwizard.lab import images as lab_images
from hubwizard.lab.spec import LabError, Progress

PACKAGES = (
    "systemd-sysv", "udev", "kmod", "iproute2", "iptables", "openssh-server", "docker.io", "nfs-kernel-server",
    "nfs-common", "libnfs-utils", "xfsprogs", "autofs", "ca-certificates", "python3", "sudo", "busybox-static",
    "procps", "netbase",
)
IMAGE_SIZE = "6G"
KERNEL_HINT = "apt-get install -y qemu-system-x86 qemu-utils linux-image-cloud-amd64"

CONFIG_UNIT = """\
[Unit]
Description=hubwizard lab: this VM's identity (hostname, address, keys, data disk) from its config disk
DefaultDependencies=no
After=systemd-remount-fs.service
Before=local-fs.target systemd-networkd.service ssh.service docker.service nfs-server.service sysinit.target
ConditionPathExists=/dev/vdb

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'mkdir -p /run/hwcfg && mount -o ro /dev/vdb /run/hwcfg && sh -e /run/hwcfg/setup.sh'

[Install]
WantedBy=sysinit.target
"""


@dataclass(frozen=True)
class Kernel:
    """The host's Debian cloud kernel that every VM boots."""

    version: str
    vmlinuz: Path
    initrd: Path
    modules: Path


def find_kernel() -> Kernel:
    """The newest /boot/vmlinuz-*-cloud-amd64 with its initrd and modules, or how to install it."""
    found = sorted(Path("/boot").glob("vmlinuz-*-cloud-amd64"))
    for vmlinuz in reversed(found):
        version = vmlinuz.name.removeprefix("vmlinuz-")
        initrd, modules = Path(f"/boot/initrd.img-{version}"), Path(f"/lib/modules/{version}")
        if initrd.exists() and modules.is_dir():
            return Kernel(version, vmlinuz, initrd, modules)
    raise LabError("no Debian cloud kernel for the lab's VMs in /boot (vmlinuz-*-cloud-amd64 with initrd and modules)",
                   fix=KERNEL_HINT)


def check_tools() -> None:
    """qemu, qemu-img, debootstrap, mkfs.ext4 and mkfs.xfs, or the one command that installs them."""
    missing = [t for t in ("qemu-system-x86_64", "qemu-img", "debootstrap", "mkfs.ext4", "mkfs.xfs", "ip") if not shutil.which(t)]
    if missing:
        raise LabError(f"lab up --vm needs {', '.join(missing)} on this machine",
                       fix=KERNEL_HINT + " debootstrap xfsprogs iproute2")


def image_hash(kernel: Kernel) -> str:
    text = "\n".join([*PACKAGES, kernel.version, CONFIG_UNIT, lab_images.MIRROR, lab_images.SOURCES_LIST, IMAGE_SIZE, "v1"])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def image_path(kernel: Kernel) -> Path:
    return lab_images.home() / "vm" / f"root-bookworm-{image_hash(kernel)}.img"


def ensure_image(kernel: Kernel, progress: Progress) -> Path:
    """The cached root disk for this kernel and recipe; built once (a few minutes) under the build lock."""
    path = image_path(kernel)
    with lab_images.build_lock():
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob("root-bookworm-*.img"):
            stale.unlink()  # an older recipe: nothing runs on it once its labs are down
        _build(kernel, path, progress)
    return path


def _build(kernel: Kernel, path: Path, progress: Progress) -> None:
    progress(f"building the VM root disk with debootstrap ({len(PACKAGES)} packages, once, a few minutes)…")
    log = path.parent / "debootstrap-vm.log"
    with tempfile.TemporaryDirectory(prefix="vmroot-", dir=path.parent) as tmp:
        root = Path(tmp) / "root"
        args = ["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), "bookworm", str(root), lab_images.MIRROR]
        with open(log, "w") as fh:
            done = subprocess.run(args, stdout=fh, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise LabError(f"debootstrap of the VM root failed (exit {done.returncode}); see {log}",
                           fix="check the network to the Debian mirror, then run `lab up --vm` again")
        customise(root, kernel)
        part = path.with_suffix(".part")
        run(["mkfs.ext4", "-q", "-F", "-L", "hwroot", "-d", str(root), str(part), IMAGE_SIZE], "mkfs.ext4 -d of the VM root")
        part.rename(path)
    progress(f"VM root disk ready: {path}")


def customise(root: Path, kernel: Kernel) -> None:
    """Modules, the config unit, networkd on, no serial getty, no shared host keys, a busybox image tarball."""
    lab_images._customise_rootfs(root)  # sources, host CA bundle, no apt caches: as the container lab
    modules = root / "usr/lib/modules"
    modules.mkdir(parents=True, exist_ok=True)  # without it cp renames the folder (LAB.md pitfall)
    run(["cp", "-a", str(kernel.modules), str(modules) + "/"], "copy the kernel modules")
    unit = root / "etc/systemd/system/hubwizard-vmconfig.service"
    unit.write_text(CONFIG_UNIT)
    system = root / "etc/systemd/system"
    _link(system / "sysinit.target.wants/hubwizard-vmconfig.service", "/etc/systemd/system/hubwizard-vmconfig.service")
    _link(system / "multi-user.target.wants/systemd-networkd.service", "/lib/systemd/system/systemd-networkd.service")
    _link(system / "serial-getty@ttyS0.service", "/dev/null")  # it hangs up ttyS0 (LAB.md)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # every VM gets its own from its config disk
    (root / "etc/fstab").write_text("# root is /dev/vda (kernel command line); the data disk is mounted by hubwizard-vmconfig\n")
    _busybox_tarball(root)


def _link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(target)


def _busybox_tarball(root: Path) -> None:
    """/opt/hubwizard/busybox.tar: a container image (docker import) for tests, as no registry is reachable."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp)
        (tree / "bin").mkdir()
        shutil.copy2(root / "bin/busybox", tree / "bin/busybox")
        for name in ("sh", "ls", "cat", "id", "dd", "echo", "stat", "sleep", "touch", "rm", "df"):
            (tree / "bin" / name).symlink_to("busybox")
        (tree / "tmp").mkdir()
        out = root / "opt/hubwizard"
        out.mkdir(parents=True, exist_ok=True)
        run(["tar", "-C", str(tree), "--numeric-owner", "-cf", str(out / "busybox.tar"), "."], "tar the busybox image")


def run(args: list[str], what: str, timeout: float = 600) -> str:
    """Run a host command; a failure is a LabError naming the command and its output's tail."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabError(f"{what}: `{' '.join(args)}` did not finish in {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise LabError(f"{what}: `{' '.join(args)}` failed (exit {done.returncode}): {' / '.join(tail)}")
    return done.stdout
