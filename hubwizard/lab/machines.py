"""Lab machines: containers that boot systemd, sshd and (optionally) dockerd like a real server.

Why containers and these flags: LAB.md records that ``--privileged`` fails on this kind of host
(no CAP_SYS_RESOURCE in the bounding set) while all other capabilities, unconfined seccomp and
apparmor, a permissive device cgroup rule and a writable cgroup tree let systemd run as PID 1
and an inner dockerd run on overlay2 (thanks to a named volume on /var/lib/docker).

Each machine's identity (admin user, sshd options, daemon.json) is copied in *before* it boots
and applied by the image's ``hubwizard-lab-setup.service`` ahead of ssh.service, so no sshd ever
runs with a half-applied configuration and machines boot in parallel.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from hubwizard.lab.dockerguard import docker_lock
from hubwizard.lab.images import text_tar

LABEL = "io.hubwizard.lab"
ROLE_LABEL = "io.hubwizard.lab.role"
HOST_LABEL = "io.hubwizard.lab.host"
SHAPE_LABEL = "io.hubwizard.lab.shape"
RUN_LABEL = "io.hubwizard.lab.run"

NFS_PATH = "/var/nfs"  # the site file's default [storage] path

RUN_FLAGS: dict[str, Any] = {
    "cap_add": ["ALL"],
    "cap_drop": ["SYS_RESOURCE"],
    "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
    "device_cgroup_rules": ["a *:* rwm"],
    # Docker's tmpfs default is noexec and 64 MB: a real server runs scripts from /tmp.
    "tmpfs": {
        "/run": "rw,nosuid,nodev,exec,mode=755,size=512m",
        "/run/lock": "rw,nosuid,nodev,noexec,size=8m",
        "/tmp": "rw,nosuid,nodev,exec,mode=1777,size=2g",
    },
    "stop_signal": "SIGRTMIN+3",
}

SETUP_SH = """\
#!/bin/sh
# hubwizard lab: applied at every boot before sshd (idempotent).
set -eu
ssh-keygen -A
mkdir -p /run/sshd
USER_NAME=$(cat /etc/hubwizard-lab/user)
if [ "$USER_NAME" = root ]; then
    HOME_DIR=/root
else
    id "$USER_NAME" >/dev/null 2>&1 || useradd -m -s /bin/bash -G sudo "$USER_NAME"
    HOME_DIR=$(getent passwd "$USER_NAME" | cut -d: -f6)
fi
install -d -m 700 -o "$USER_NAME" -g "$USER_NAME" "$HOME_DIR/.ssh"
install -m 600 -o "$USER_NAME" -g "$USER_NAME" /etc/hubwizard-lab/authorized_keys "$HOME_DIR/.ssh/authorized_keys"
if [ -f /etc/hubwizard-lab/password ]; then
    printf '%s:%s\\n' "$USER_NAME" "$(cat /etc/hubwizard-lab/password)" | chpasswd
    rm -f /etc/hubwizard-lab/password
fi
"""


@dataclass(frozen=True)
class MachineSpec:
    """What one machine must look like: its site name, role and the admin's access to it."""

    host: str  # hub, node1, spare1
    role: str  # hub | node | spare
    user: str
    port: int
    public_key: str
    sudo_password: str | None = None
    allow_only_from: str | None = None  # the hub's IP when nodes are reached through it
    insecure_registry: str | None = None  # written to daemon.json on --with-docker machines


def lab_labels(lab: str) -> dict[str, str]:
    """io.hubwizard.lab=LAB, plus the test run that made it ($HUBWIZARD_LAB_RUN, set by
    scripts/test.sh): a run's cleanup then removes its own labs, never another run's."""
    run = os.environ.get("HUBWIZARD_LAB_RUN")
    return {LABEL: lab, RUN_LABEL: run} if run else {LABEL: lab}


def container_name(lab: str, host: str) -> str:
    """Containers are named hwlab-LAB-HOST so `docker ps` reads like the site file."""
    return f"hwlab-{lab}-{host}"


def identity_files(spec: MachineSpec) -> dict[str, tuple[str, int]]:
    """The files that make a machine the one the site file describes."""
    sshd = [
        f"Port {spec.port}",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        f"PermitRootLogin {'prohibit-password' if spec.user == 'root' else 'no'}",
        "UseDNS no",
    ]
    if spec.allow_only_from:
        # Reached only through the hub (ProxyJump): any other source is refused at login.
        sshd.append(f"AllowUsers {spec.user}@{spec.allow_only_from}")
    files = {
        "/etc/hubwizard-lab/setup.sh": (SETUP_SH, 0o755),
        "/etc/hubwizard-lab/user": (spec.user + "\n", 0o644),
        "/etc/hubwizard-lab/authorized_keys": (spec.public_key + "\n", 0o644),
        "/etc/ssh/sshd_config.d/50-hubwizard-lab.conf": ("\n".join(sshd) + "\n", 0o644),
    }
    if spec.user != "root":
        rule = "ALL" if spec.sudo_password else "NOPASSWD: ALL"
        files["/etc/sudoers.d/hubwizard-lab"] = (f"{spec.user} ALL=(ALL:ALL) {rule}\n", 0o440)
    if spec.sudo_password:
        files["/etc/hubwizard-lab/password"] = (spec.sudo_password, 0o600)
    if spec.insecure_registry:
        daemon = {"insecure-registries": [spec.insecure_registry]}
        files["/etc/docker/daemon.json"] = (json.dumps(daemon, indent=2) + "\n", 0o644)
    return files


def create(client: Any, lab: str, spec: MachineSpec, image: str, network: str, labels: dict[str, str]) -> Any:
    """Create, configure and start one machine; return the container (booting, not yet ready)."""
    name = container_name(lab, spec.host)
    volume = client.volumes.create(name=f"{name}-docker", labels=lab_labels(lab))
    mounts = {"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}, volume.name: {"bind": "/var/lib/docker"}}
    if spec.role in ("hub", "nfs"):  # the storage host: the hub, or a dedicated NFS host (--nfs-host)
        # nfs-ganesha exports through file handles, which the container's overlayfs root cannot
        # give ("Operation not supported"): the export path must sit on a real filesystem.
        nfs = client.volumes.create(name=f"{name}-nfs", labels=lab_labels(lab))
        mounts[nfs.name] = {"bind": NFS_PATH}
    endpoint = client.api.create_endpoint_config(aliases=[spec.host])
    container = client.containers.create(
        image,
        name=name,
        hostname=spec.host,
        labels={**labels, **lab_labels(lab), ROLE_LABEL: spec.role, HOST_LABEL: spec.host},
        volumes=mounts,
        network=network,
        networking_config={network: endpoint},
        detach=True,
        **RUN_FLAGS,
    )
    container.put_archive("/", text_tar(identity_files(spec)))
    with docker_lock(f"start {name}"):  # start joins the network: serialised with other labs' removals
        container.start()
    return container


def ip_of(container: Any, network: str) -> str:
    """The container's address on the lab network (known as soon as it has started)."""
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]


def _exec(container: Any, cmd: list[str]) -> tuple[int, str]:
    code, out = container.exec_run(cmd, demux=False)
    return code, (out or b"").decode(errors="replace").strip()


def ssh_banner(address: str, port: int, timeout: float = 2.0) -> bool:
    """True when an SSH server greets on address:port (what a client would see first)."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def wait_ready(container: Any, address: str, port: int, with_docker: bool, timeout: float = 300.0) -> None:
    """Wait until systemd has booted, sshd greets and (with docker) dockerd answers.

    Why all three: a machine that answers on port 22 may still be booting (units racing the
    recipes), and a rehearsal that starts before dockerd answers fails for the wrong reason.
    """
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        container.reload()
        if container.status != "running":
            code = container.attrs["State"].get("ExitCode")
            raise RuntimeError(f"{container.name} stopped while booting (exit {code}): {_tail_logs(container)}")
        _, state = _exec(container, ["systemctl", "is-system-running"])
        if state in ("running", "degraded") and ssh_banner(address, port) and _docker_ok(container, with_docker):
            return
        time.sleep(0.5)
    _, failed = _exec(container, ["systemctl", "--failed", "--no-legend", "--plain"])
    raise RuntimeError(f"{container.name} not ready after {timeout:.0f}s (systemd: {state}; failed units: {failed})")


def _docker_ok(container: Any, with_docker: bool) -> bool:
    return not with_docker or _exec(container, ["docker", "info", "--format", "{{.ServerVersion}}"])[0] == 0


def _tail_logs(container: Any) -> str:
    try:
        return container.logs(tail=10).decode(errors="replace")
    except Exception:  # noqa: BLE001 - the container may already be gone; the caller reports it
        return "(no logs)"


def host_keys(container: Any, timeout: float = 30.0) -> list[str]:
    """The machine's public host keys, read from inside it (not learned from the network).

    Why the wait for ed25519: it is the key clients negotiate first; a read that missed it (an
    exec answering late on a loaded engine) left known_hosts with only the other types, and the
    first login then failed as "known_hosts holds another type" (seen once in CI)."""
    deadline = time.monotonic() + timeout
    while True:
        keys = []
        for kind in ("ed25519", "ecdsa", "rsa"):
            code, out = _exec(container, ["cat", f"/etc/ssh/ssh_host_{kind}_key.pub"])
            if code == 0 and out:
                algo, blob = out.split()[:2]
                keys.append(f"{algo} {blob}")
        if any(key.startswith("ssh-ed25519 ") for key in keys) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if not keys:
        raise RuntimeError(f"{container.name}: no SSH host key found in /etc/ssh")
    return keys


def known_hosts_lines(address: str, port: int, keys: list[str]) -> list[str]:
    """known_hosts entries in OpenSSH's format ([addr]:port when not on 22)."""
    who = address if port == 22 else f"[{address}]:{port}"
    return [f"{who} {key}" for key in keys]


def dockerd_answers(container: Any) -> str:
    """'yes', 'no' or 'not installed': whether the machine's own engine answers."""
    code, out = _exec(container, ["sh", "-c", "command -v docker >/dev/null || exit 127; docker info -f ok"])
    if code == 127:
        return "not installed"
    return "yes" if code == 0 else "no"
