"""The network of a VM lab: a Linux bridge, one tap per VM, an address for this host on it.

Why a bridge of our own rather than Docker's: qemu's tap backend needs a tap device, and a
bridge the lab creates and removes by name keeps it independent of the Docker engine. Names
are derived from the lab's name (15-character limit of Linux interface names), so `lab down`
finds them even if the record is lost. This host's Docker sets bridge-nf-call-iptables and a
FORWARD policy of DROP, which would drop VM-to-VM traffic crossing the bridge: one ACCEPT
rule for traffic within the lab's bridge, tagged with the lab's name, is added and removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import subprocess
from collections.abc import Iterator

from hubwizard.lab import images as lab_images
from hubwizard.lab.spec import LabError
from hubwizard.lab.vmimage import run

SUBNETS = ipaddress.IPv4Network("10.213.0.0/16")  # one /24 per VM lab, the first free one


def _stem(lab: str) -> str:
    return lab[:7] + hashlib.sha256(lab.encode()).hexdigest()[:3]


def bridge_name(lab: str) -> str:
    return f"hwb{_stem(lab)}"


def tap_name(lab: str, index: int) -> str:
    return f"hwt{_stem(lab)}{index}"


def _links() -> list[dict]:
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=False).stdout
    return json.loads(out or "[]")


def taps_of(lab: str) -> list[str]:
    prefix = f"hwt{_stem(lab)}"
    return [link["ifname"] for link in _links() if link["ifname"].startswith(prefix)]


def exists(name: str) -> bool:
    return any(link["ifname"] == name for link in _links())


@contextlib.contextmanager
def _subnet_lock() -> Iterator[None]:
    """Two labs coming up at once must not pick the same /24."""
    lab_images.home().mkdir(parents=True, exist_ok=True)
    with open(lab_images.home() / "vmnet.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=False).stdout
    nets: list[ipaddress.IPv4Network] = []
    for route in json.loads(out or "[]"):
        with contextlib.suppress(ValueError):
            if route.get("dst", "default") not in ("default",):
                nets.append(ipaddress.IPv4Network(route["dst"], strict=False))
    return nets


def create_bridge(lab: str) -> tuple[str, ipaddress.IPv4Network]:
    """The lab's bridge on the first /24 of 10.213.0.0/16 that no route of this host uses."""
    bridge = bridge_name(lab)
    with _subnet_lock():
        used = _used_networks()
        subnet = next((n for n in SUBNETS.subnets(new_prefix=24) if not any(n.overlaps(u) for u in used)), None)
        if subnet is None:
            raise LabError("no free /24 left in 10.213.0.0/16 for a VM lab", fix="bring other VM labs down first")
        run(["ip", "link", "add", bridge, "type", "bridge"], f"create bridge {bridge}")
        run(["ip", "addr", "add", f"{subnet[1]}/24", "dev", bridge], f"address {subnet[1]} on {bridge}")
        run(["ip", "link", "set", bridge, "up"], f"bring {bridge} up")
    _forward_rule("-I", bridge, lab)
    return bridge, subnet


def create_tap(lab: str, index: int, bridge: str) -> str:
    tap = tap_name(lab, index)
    run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"], f"create tap {tap}")
    run(["ip", "link", "set", tap, "master", bridge], f"put {tap} on {bridge}")
    run(["ip", "link", "set", tap, "up"], f"bring {tap} up")
    return tap


def _forward_rule(action: str, bridge: str, lab: str) -> bool:
    """Insert (-I), check (-C) or delete (-D) the ACCEPT rule for traffic within the bridge."""
    args = ["iptables", "-w", "5", action, "FORWARD", "-i", bridge, "-o", bridge,
            "-m", "comment", "--comment", f"hubwizard-lab {lab}", "-j", "ACCEPT"]
    if action == "-I":
        args[4:5] = ["FORWARD", "1"]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    return done.returncode == 0


def remove(lab: str) -> list[str]:
    """Remove the lab's taps, bridge and forward rule (whatever of them exists); return what went."""
    gone = []
    for tap in taps_of(lab):
        subprocess.run(["ip", "link", "del", tap], capture_output=True, check=False)
        gone.append(tap)
    bridge = bridge_name(lab)
    while _forward_rule("-D", bridge, lab):
        pass
    if exists(bridge):
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        gone.append(bridge)
    return gone
