"""`lab up --vm`: lab machines as qemu virtual machines with their own (Debian) kernel.

Why: the container lab shares this host's kernel, which has no NFS client or server and no XFS
quotas, so the storage and quota steps never ran for real there. A VM has Debian's kernel, so
kernel nfsd, NFS volumes, `xfs_quota` and IPVS run as in production. Emulation is TCG
(nested KVM hangs here, shared/LAB.md), hence few machines and a pre-built image (vmimage).

What a VM lab is: per VM a qcow2 overlay on the shared root disk, a config disk (identity:
hostname, address, keys, user, data disk) and, for the storage host (the hub, or the VM "nfs"
of `--nfs-host`: storage.server), a raw data disk that becomes XFS mounted with pquota at the
storage path; a qemu process whose PID is recorded; a tap on the
lab's bridge (vmnet); the images come from a registry container on this machine (vmregistry).
`down` kills exactly the recorded PIDs (checked against their command
line) and removes taps, bridge, rule, the registry and files; nothing else is touched.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hubwizard.core.errors import ConfigError
from hubwizard.core.secrets import write_secrets
from hubwizard.lab import vmnet, vmregistry
from hubwizard.lab.dockerguard import hold
from hubwizard.lab.machines import known_hosts_lines, ssh_banner
from hubwizard.lab.services import ssh_keypair
from hubwizard.lab.spec import LabError, LabSpec, Progress, load_record, save_record, state_dir
from hubwizard.lab.vmimage import Kernel, check_tools, ensure_image, find_kernel, run
from hubwizard.lab.vmsite import write_vm_site

STORAGE_PATH = "/var/nfs"
DATA_SIZE = "4G"  # sparse; preflight asks 2 GiB free at the storage path
# MiB per role: preflight asks 1 GiB of MemTotal, and a 1024 MiB guest shows ~972 (the kernel keeps the rest)
MEMORY = {"hub": 2048, "node": 1536, "spare": 1536, "nfs": 1536}
BOOT_TIMEOUT = 900.0  # TCG on a busy 2-core host: systemd + dockerd take minutes, not seconds


def vm_dir(lab: str) -> Path:
    return state_dir(lab) / "vm"


def present(lab: str) -> bool:
    """Whether lab NAME is (or was, partly) a VM lab: its record, its VM files or its bridge."""
    record = load_record(lab) or {}
    return record.get("kind") == "vm" or vm_dir(lab).exists() or vmnet.exists(vmnet.bridge_name(lab))


def shape(spec: LabSpec) -> str:
    return spec.shape() + " vm"


def storage_role(spec: LabSpec) -> str:
    """The role of the VM whose data disk holds users' folders: the dedicated NFS host of
    `--nfs-host` (the site's storage.server), else the hub."""
    return "nfs" if spec.nfs_host else "hub"


def check_spec(spec: LabSpec, track: str = "swarm-mode") -> None:
    if spec.jump or spec.base_image:
        raise LabError("lab up --vm does not take --jump or --base-image (yet)", fix="omit them")
    if spec.nfs_host and track != "swarm-mode":  # the classic track exports the hub's /home
        raise ConfigError(f"lab up --vm --nfs-host --track {track}: the {track} track's homes are the hub's /home; "
                          "a dedicated NFS host is for the swarm-mode track (omit --track or --nfs-host)")


def up(spec: LabSpec, site_path: Path, progress: Progress = print, track: str = "swarm-mode") -> dict[str, Any]:
    """Bring a VM lab up (or reuse a whole one of the same shape); return its record. ``track``
    is the site file's (vmsite.TRACKS); a reused lab's site is rewritten for the one asked now."""
    check_spec(spec, track)
    check_tools()
    kernel = find_kernel()
    with _name_lock(spec.name):
        record = load_record(spec.name)
        if present(spec.name):
            return _reuse(spec, site_path, record, progress, track)
        started = time.monotonic()
        image = ensure_image(kernel, progress)
        built = time.monotonic() - started
        try:
            record = _create(spec, kernel, image, site_path, progress, track)
        except BaseException:
            progress(f"lab up --vm failed: removing what it made for lab {spec.name!r}…")
            _down_locked(spec.name, lambda _m: None)
            raise
        record["timings"]["image_s"] = round(built, 1)
        save_record(record)
    progress(f"ready: lab {spec.name!r} (VMs)")
    return record


def _name_lock(lab: str) -> Any:
    locks = state_dir(lab).parent
    locks.mkdir(parents=True, exist_ok=True)
    return hold(locks / f".{lab}.lock", f"work on lab {lab}", fix="wait for it, or stop it and run `lab down` again")


def _reuse(spec: LabSpec, site_path: Path, record: dict | None, progress: Progress, track: str) -> dict[str, Any]:
    if not record or record.get("shape") != shape(spec) or not all(_alive(m) for m in record["machines"].values()):
        raise LabError(f"a lab named {spec.name!r} already exists with another shape or is not fully running",
                       fix=f"remove it first with `hubwizard lab down --name {spec.name}` (or pick another --name)")
    progress(f"already up: lab {spec.name!r} (VMs)")
    record["site_path"], record["track"] = str(site_path.resolve()), track
    write_vm_site(site_path, record)
    write_secrets(site_path, record["secrets"])
    save_record(record)
    return record


def _create(spec: LabSpec, kernel: Kernel, image: Path, site_path: Path, progress: Progress,
            track: str) -> dict[str, Any]:
    import secrets

    state = state_dir(spec.name)
    vm_dir(spec.name).mkdir(parents=True, mode=0o700)
    state.chmod(0o700)
    key = state / "id_ed25519"
    public = ssh_keypair(key)
    secret = {"sudo_password": secrets.token_urlsafe(12)} if spec.sudo_password else {}
    progress(f"creating bridge {vmnet.bridge_name(spec.name)}…")
    bridge, subnet = vmnet.create_bridge(spec.name)
    hosts = spec.hosts()
    ips = {h: str(subnet[10 + i]) for i, (h, _) in enumerate(hosts)}
    machines: dict[str, dict[str, Any]] = {}
    known: list[str] = []
    for index, (host, role) in enumerate(hosts):
        machine = _prepare(spec, host, role, index, ips, public, secret, bridge, str(subnet[1]), image)
        machines[host] = machine
        known += known_hosts_lines(machine["ip"], spec.ssh_port, [machine.pop("host_key")])
    (state / "known_hosts").write_text("\n".join(known) + "\n")
    for host, machine in machines.items():
        progress(f"booting {host} ({machine['ip']}, {machine['memory_mb']} MiB, TCG)…")
        machine["pid"] = _boot(kernel, machine)
        machine["booted_at"] = time.time()
    registry, secret["registry_password"] = vmregistry.start(spec.name, str(subnet[1]), progress)
    record: dict[str, Any] = {
        "name": spec.name, "kind": "vm", "shape": shape(spec), "spec": asdict(spec), "created": time.time(),
        "bridge": bridge, "subnet": str(subnet), "host_ip": str(subnet[1]), "machines": machines,
        "key": str(key), "known_hosts": str(state / "known_hosts"), "site_path": str(site_path.resolve()),
        "secrets": secret, "registry": registry, "kernel": kernel.version, "image": str(image),
        "storage_path": STORAGE_PATH, "track": track, "timings": {},
    }
    save_record(record)  # from here `lab down` finds the PIDs even if the wait below is interrupted
    waits = _wait_all(record, progress)
    record["timings"].update({f"{h}_{k}": v for h, w in waits.items() for k, v in w.items()})
    save_record(record)
    write_vm_site(site_path, record)
    write_secrets(site_path, secret)
    return record


def _mac(lab: str, index: int) -> str:
    digest = hashlib.sha256(f"{lab}/{index}".encode()).hexdigest()
    return f"52:54:00:{digest[0:2]}:{digest[2:4]}:{index % 256:02x}"


def _prepare(spec: LabSpec, host: str, role: str, index: int, ips: dict[str, str], public: str,
             secret: dict[str, str], bridge: str, gateway: str, image: Path) -> dict[str, Any]:
    """The VM's disks (overlay, config, data for the storage host) and tap; qemu is not started yet."""
    folder = vm_dir(spec.name) / host
    folder.mkdir(parents=True, mode=0o700)
    overlay = folder / "root.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image), str(overlay)], f"overlay for {host}")
    host_key = folder / "ssh_host_ed25519_key"
    host_public = ssh_keypair(host_key).rsplit(" ", 1)[0]
    mac = _mac(spec.name, index)
    data = None
    if role == storage_role(spec):
        data = folder / "data.img"
        run(["truncate", "-s", DATA_SIZE, str(data)], f"data disk for {host}")
    config = _config_disk(folder, _setup_script(spec, host, ips, mac, gateway, public, secret, data is not None), host_key)
    tap = vmnet.create_tap(spec.name, index, bridge)
    return {
        "ip": ips[host], "role": role, "mac": mac, "tap": tap, "dir": str(folder), "overlay": str(overlay),
        "config": str(config), "data": str(data) if data else None, "memory_mb": MEMORY[role], "host_key": host_public,
        "console": str(folder / "console.log"), "pidfile": str(folder / "qemu.pid"),
    }


def _setup_script(spec: LabSpec, host: str, ips: dict[str, str], mac: str, gateway: str, public: str,
                  secret: dict[str, str], data: bool) -> str:
    """What hubwizard-vmconfig runs at each boot: identity, network, login, data disk."""
    hosts = "\\n".join(f"{ip} {name}" for name, ip in ips.items())
    lines = [
        f"hostname {host}", f"echo {host} > /etc/hostname",
        f"printf '127.0.0.1 localhost\\n{hosts}\\n' > /etc/hosts",
        "mkdir -p /etc/systemd/network",
        f"printf '[Match]\\nMACAddress={mac}\\n\\n[Network]\\nAddress={ips[host]}/24\\nGateway={gateway}\\n' "
        "> /etc/systemd/network/10-lab.network",
        "install -m 0600 /run/hwcfg/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key",
        "install -m 0644 /run/hwcfg/ssh_host_ed25519_key.pub /etc/ssh/ssh_host_ed25519_key.pub",
        "printf 'HostKey /etc/ssh/ssh_host_ed25519_key\\nUseDNS no\\n' > /etc/ssh/sshd_config.d/hubwizard-lab.conf",
    ]
    if spec.ssh_port != 22:
        lines.append(f"echo 'Port {spec.ssh_port}' >> /etc/ssh/sshd_config.d/hubwizard-lab.conf")
    lines += _user_lines(spec, public, secret)
    if data:
        lines += [
            "blkid /dev/vdc >/dev/null 2>&1 || mkfs.xfs -q -L hwdata /dev/vdc",
            f"mkdir -p {STORAGE_PATH}",
            f"mountpoint -q {STORAGE_PATH} || mount -t xfs -o pquota /dev/vdc {STORAGE_PATH}",
        ]
    return "\n".join(lines) + "\n"


def _user_lines(spec: LabSpec, public: str, secret: dict[str, str]) -> list[str]:
    if spec.user == "root":
        keys = "/root/.ssh/authorized_keys"
        return ["install -d -m 0700 /root/.ssh", f"echo '{public}' > {keys}", f"chmod 0600 {keys}"]
    user, home = spec.user, f"/home/{spec.user}"
    rule = f"{user} ALL=(ALL) ALL" if spec.sudo_password else f"{user} ALL=(ALL) NOPASSWD:ALL"
    lines = [
        f"id {user} >/dev/null 2>&1 || useradd -m -s /bin/bash {user}",
        f"install -d -m 0700 -o {user} -g {user} {home}/.ssh",
        f"echo '{public}' > {home}/.ssh/authorized_keys",
        f"chown {user}:{user} {home}/.ssh/authorized_keys && chmod 0600 {home}/.ssh/authorized_keys",
        f"echo '{rule}' > /etc/sudoers.d/hubwizard-lab && chmod 0440 /etc/sudoers.d/hubwizard-lab",
    ]
    if spec.sudo_password:
        lines.append(f"echo '{user}:{secret['sudo_password']}' | chpasswd")
    return lines


def _config_disk(folder: Path, script: str, host_key: Path) -> Path:
    """A small ext4 disk (mkfs -d, nothing mounted here) holding setup.sh and the host key."""
    tree = folder / "config"
    tree.mkdir(mode=0o700)
    (tree / "setup.sh").write_text(script)
    for src in (host_key, host_key.with_suffix(".pub")):
        (tree / src.name).write_bytes(src.read_bytes())
    disk = folder / "config.img"
    run(["mkfs.ext4", "-q", "-F", "-L", "hwcfg", "-d", str(tree), str(disk), "16M"], f"config disk in {folder}")
    return disk


def qemu_args(kernel: Kernel, machine: dict[str, Any]) -> list[str]:
    """The qemu command line of one VM: TCG, its disks in a fixed order (vda root, vdb config, vdc data)."""
    drives = [f"file={machine['overlay']},format=qcow2,if=virtio", f"file={machine['config']},format=raw,if=virtio,readonly=on"]
    if machine.get("data"):
        drives.append(f"file={machine['data']},format=raw,if=virtio")
    args = [
        "qemu-system-x86_64", "-name", Path(machine["dir"]).name, "-accel", "tcg,thread=multi", "-cpu", "max",
        "-smp", "2", "-m", str(machine["memory_mb"]), "-kernel", str(kernel.vmlinuz), "-initrd", str(kernel.initrd),
        "-append", "root=/dev/vda rw console=ttyS0 apparmor=0 net.ifnames=0 quiet",
        "-netdev", f"tap,id=n0,ifname={machine['tap']},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=n0,mac={machine['mac']}",
        "-display", "none", "-monitor", "none", "-serial", f"file:{machine['console']}",
        "-daemonize", "-pidfile", machine["pidfile"],
    ]
    for drive in drives:
        args += ["-drive", drive]
    return args


def _boot(kernel: Kernel, machine: dict[str, Any]) -> int:
    run(qemu_args(kernel, machine), f"start qemu for {Path(machine['dir']).name}", timeout=60)
    return int(Path(machine["pidfile"]).read_text().strip())


def ssh_args(record: dict[str, Any], host: str) -> list[str]:
    """ssh as the site file logs in: the lab's key, its known_hosts checked strictly."""
    spec = record["spec"]
    return [
        "ssh", "-i", record["key"], "-p", str(spec["ssh_port"]), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-o", f"UserKnownHostsFile={record['known_hosts']}", "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10",
        f"{spec['user']}@{record['machines'][host]['ip']}",
    ]


def ssh(record: dict[str, Any], host: str, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run COMMAND as root on HOST (through sudo for another user; its password, if any, on stdin)."""
    password = record.get("secrets", {}).get("sudo_password")
    sudo = "" if record["spec"]["user"] == "root" else ("sudo -S -p '' " if password else "sudo -n ")
    return subprocess.run([*ssh_args(record, host), f"{sudo}sh -c {_quote(command)}"], capture_output=True, text=True,
                          input=(password + "\n") if password and sudo else "", timeout=timeout, check=False)


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _wait_all(record: dict[str, Any], progress: Progress) -> dict[str, dict[str, float]]:
    """Wait for every VM in parallel; an interrupt (Ctrl-C, SIGTERM) stops the waiters at once,
    so the caller's cleanup runs now rather than after the boot timeout."""
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=len(record["machines"]))
    try:
        futures = {h: pool.submit(_wait, record, h, progress, stop) for h in record["machines"]}
        return {h: f.result() for h, f in futures.items()}
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


def _wait(record: dict[str, Any], host: str, progress: Progress, stop: threading.Event) -> dict[str, float]:
    """Until sshd greets, then until dockerd answers; returns seconds from power-on for each."""
    machine, port = record["machines"][host], int(record["spec"]["ssh_port"])
    start, deadline = machine["booted_at"], time.monotonic() + BOOT_TIMEOUT
    while not ssh_banner(machine["ip"], port):
        _still_running(machine, host, deadline, stop)
        time.sleep(2)
    to_ssh = time.time() - start
    progress(f"{host}: sshd answers after {to_ssh:.0f} s; waiting for dockerd…")
    while True:
        _still_running(machine, host, deadline, stop)
        try:
            done = ssh(record, host, "docker info -f ok", timeout=20)
            if done.returncode == 0:
                break
        except subprocess.TimeoutExpired:
            pass
        time.sleep(3)
    to_docker = time.time() - start
    progress(f"{host} ready ({machine['ip']}): dockerd after {to_docker:.0f} s")
    return {"ssh_s": round(to_ssh, 1), "docker_s": round(to_docker, 1)}


def _still_running(machine: dict[str, Any], host: str, deadline: float, stop: threading.Event) -> None:
    if stop.is_set():
        raise LabError(f"{host}: no longer waited for (lab up was interrupted or another VM failed)")
    tail = _console_tail(machine)
    if not _alive(machine):
        raise LabError(f"{host}: qemu exited while booting; console: {tail}", fix=f"read {machine['console']}")
    if time.monotonic() > deadline:
        raise LabError(f"{host}: not ready after {BOOT_TIMEOUT:.0f} s (sshd and dockerd); console: {tail}",
                       fix=f"read {machine['console']}; on a busy host, bring fewer labs up at once")


def _console_tail(machine: dict[str, Any]) -> str:
    try:
        lines = Path(machine["console"]).read_text(errors="replace").strip().splitlines()
        return " / ".join(lines[-3:]) or "(empty)"
    except OSError:
        return "(no console log)"


def _alive(machine: dict[str, Any]) -> bool:
    """The recorded PID runs, and is our qemu (its command line names this VM's overlay)."""
    pid = machine.get("pid")
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return "qemu-system" in cmdline and machine["overlay"] in cmdline


def down(lab: str, progress: Progress = print) -> dict[str, int]:
    with _name_lock(lab):
        return _down_locked(lab, progress)


def _down_locked(lab: str, progress: Progress) -> dict[str, int]:
    """Kill the recorded qemu PIDs (ours only), remove taps, bridge, rule and the lab's files."""
    import shutil

    record = load_record(lab) or {}
    machines = list(record.get("machines", {}).values()) or _machines_from_files(lab)
    killed = sum(_stop(m) for m in machines)
    links = vmnet.remove(lab)
    links += ["registry"] * vmregistry.remove(lab)
    shutil.rmtree(state_dir(lab), ignore_errors=True)
    progress(f"lab {lab!r} is down ({killed} VMs stopped, {len(links)} links removed)" if killed or links
             else f"lab {lab!r} was not up; nothing to remove")
    return {"vms": killed, "links": len(links)}


def _machines_from_files(lab: str) -> list[dict[str, Any]]:
    """A record lost mid-up: the pidfiles qemu wrote still name the processes."""
    found = []
    for pidfile in vm_dir(lab).glob("*/qemu.pid"):
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            continue
        found.append({"pid": pid, "overlay": str(pidfile.parent / "root.qcow2")})
    return found


def _stop(machine: dict[str, Any]) -> int:
    if not _alive(machine) and machine.get("pidfile") and Path(machine["pidfile"]).exists():
        machine = {**machine, "pid": int(Path(machine["pidfile"]).read_text().strip() or 0)}
    if not _alive(machine):
        return 0
    os.kill(machine["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 15
    while _alive(machine) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(machine):
        os.kill(machine["pid"], signal.SIGKILL)
        while _alive(machine):
            time.sleep(0.1)
    return 1


def status(lab: str) -> dict[str, Any]:
    """The lab's VMs with role, IP, qemu state (by recorded PID) and whether sshd greets."""
    record = load_record(lab) or {}
    port = int(record.get("spec", {}).get("ssh_port", 22))
    rows = []
    for host, m in record.get("machines", {}).items():
        alive = _alive(m)
        rows.append({
            "name": host, "role": m["role"], "ip": m["ip"], "state": "running" if alive else "stopped",
            "pid": m.get("pid"), "sshd": "yes" if alive and ssh_banner(m["ip"], port) else "no", "dockerd": "-",
        })
    healthy = bool(rows) and all(r["state"] == "running" and r["sshd"] == "yes" for r in rows)
    return {"name": lab, "kind": "vm", "up": bool(rows), "healthy": healthy, "site": record.get("site_path"),
            "registry": None, "bridge": record.get("bridge"), "machines": rows}
