"""The Swarm endpoint mode of the hub service and of users' servers: a virtual IP ("vip", load
balanced by the kernel's IPVS) where every swarm host's kernel has IPVS, else DNS round robin
("dnsrr", which needs nothing from the kernel).

Why a choice and not always vip: a VIP is programmed with IPVS in each container's network
namespace; a kernel without the ip_vs module (some container hosts, minimal cloud kernels)
leaves the name resolving to an address nothing answers on. Why not always dnsrr: vip is
Docker's default and what most Swarm documentation and tooling assumes. [swarm] endpoint_mode
= "auto" (the default) takes vip exactly when every swarm host (the hub and the nodes) has it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hubwizard.core.config import Site

MODES = ("auto", "vip", "dnsrr")

# Read-only, no sudo: "STATE KERNEL". loaded: /sys/module/ip_vs (loaded or built in);
# loadable: modprobe finds it (dry run), or the module file is under /lib/modules/KERNEL.
# Loadable is enough: dockerd's IPVS library (moby/ipvs setup()) runs `modprobe -va ip_vs` itself.
IPVS_PROBE = (
    'k=$(uname -r); if [ -d /sys/module/ip_vs ]; then s=loaded; '
    'elif PATH="$PATH:/sbin:/usr/sbin" modprobe -n -q ip_vs 2>/dev/null; then s=loadable; '
    'elif ls "/lib/modules/$k/kernel/net/netfilter/ipvs/" 2>/dev/null | grep -q "^ip_vs\\.ko"; then s=loadable; '
    'else s=absent; fi; echo "$s $k"'
)

FIX = ('load IPVS on that host (`sudo modprobe ip_vs`; the kernel needs CONFIG_IP_VS: a distribution kernel '
       'such as Debian\'s linux-image-amd64, or linux-modules-extra-$(uname -r) on Ubuntu), or set '
       '[swarm] endpoint_mode = "auto" (vip where every host has IPVS, else dnsrr) or "dnsrr"')


@dataclass(frozen=True)
class Ipvs:
    """One host's answer to IPVS_PROBE. state "unknown": not probed (offline, host down)."""

    state: str = "unknown"  # loaded | loadable | absent | unknown
    kernel: str = ""

    @property
    def present(self) -> bool:
        return self.state in ("loaded", "loadable")


def parse_probe(stdout: str) -> Ipvs:
    """'loadable 6.1.0-57-cloud-amd64' -> Ipvs; anything else is unknown."""
    words = stdout.split()
    if len(words) >= 2 and words[0] in ("loaded", "loadable", "absent"):
        return Ipvs(words[0], words[1])
    return Ipvs()


@dataclass(frozen=True)
class Choice:
    """The endpoint mode apply uses, the one line plan and verify show, and the swarm hosts
    without IPVS (not empty with mode vip: the hub-service step refuses)."""

    mode: str
    line: str
    lacking: tuple[str, ...] = field(default=())
    lacking_facts: tuple[tuple[str, Ipvs], ...] = field(default=(), repr=False)

    @property
    def blocked(self) -> bool:
        return self.mode == "vip" and bool(self.lacking)

    def refusal(self) -> str:
        """The hub-service step's message when vip is asked for where a host has no IPVS."""
        return f"[swarm] endpoint_mode = \"vip\", but {_lacking_text(self.lacking_facts)}: {FIX}"


def swarm_hosts(site: Site) -> list[str]:
    """The hosts a VIP lives on: the hub (a manager) and every node, in the site file's order."""
    return [site.hub_host.name, *(n.name for n in site.nodes)]


def _lacking_text(lacking: tuple[tuple[str, Ipvs], ...]) -> str:
    """'node2 has no IPVS (kernel 6.18.4)', 'hub, node1 have no IPVS (kernel X)', 'node3 was not probed'."""
    absent = [(h, f) for h, f in lacking if f.state == "absent"]
    unknown = [h for h, f in lacking if f.state != "absent"]
    parts = []
    if absent:
        kernels = sorted({f.kernel for _, f in absent})
        names = ", ".join(h for h, _ in absent)
        verb = "has" if len(absent) == 1 else "have"
        if len(kernels) == 1:
            parts.append(f"{names} {verb} no IPVS (kernel {kernels[0]})")
        else:
            parts.append(", ".join(f"{h} (kernel {f.kernel})" for h, f in absent) + " have no IPVS")
    if unknown:
        parts.append(f"{', '.join(unknown)} {'was' if len(unknown) == 1 else 'were'} not probed for IPVS")
    return "; ".join(parts)


def choose(site: Site, ipvs: dict[str, Ipvs]) -> Choice:
    """[swarm] endpoint_mode and the hosts' IPVS facts -> the mode and why, in one line."""
    facts = tuple((h, ipvs.get(h, Ipvs())) for h in swarm_hosts(site))
    lacking = tuple((h, f) for h, f in facts if not f.present)
    names = tuple(h for h, _ in lacking)
    setting = site.swarm.endpoint_mode
    if setting == "dnsrr":
        return Choice("dnsrr", "endpoint mode: dnsrr (set in [swarm] endpoint_mode)", names, lacking)
    if setting == "vip":
        why = f", but {_lacking_text(lacking)}" if lacking else ""
        return Choice("vip", f"endpoint mode: vip (set in [swarm] endpoint_mode){why}", names, lacking)
    if not lacking:
        return Choice("vip", "endpoint mode: vip (every host has IPVS)", names, lacking)
    return Choice("dnsrr", f"endpoint mode: dnsrr: {_lacking_text(lacking)}", names, lacking)
