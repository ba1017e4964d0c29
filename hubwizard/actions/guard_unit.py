"""The systemd unit every firewall guard installs (NFS, Swarm's ports, the classic track's Consul).

Why one shape: each guard makes its own chains, flushes and fills them, then hooks them first
into their parent chains (DOCKER-USER for containers, INPUT/OUTPUT for the host), and must come
back whenever Docker starts (Docker rebuilds its chains then). Written once here, the guards
differ only in their rules and their words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from hubwizard.engine.calls import StepContext

IPT = "/usr/sbin/iptables -w"
# refuse rather than drop: a user's tool fails at once instead of hanging
REJECT = {"tcp": "REJECT --reject-with tcp-reset", "udp": "REJECT --reject-with icmp-port-unreachable"}


def iptables_lines(chains: Iterable[str], rules: Iterable[str], jumps: Iterable[tuple[str, str]]) -> list[str]:
    """ExecStart lines: make DOCKER-USER and ``chains``, flush ``chains``, append ``rules``
    (iptables arguments, chain first), and insert each (parent, chain) jump once."""
    chains = list(chains)
    lines = [f"ExecStart=-{IPT} -N {chain}" for chain in ("DOCKER-USER", *chains)]
    lines += [f"ExecStart={IPT} -F {chain}" for chain in chains]
    lines += [f"ExecStart={IPT} -A {rule}" for rule in rules]
    lines += [f"ExecStart=/bin/sh -c '{IPT} -C {src} -j {dst} 2>/dev/null || {IPT} -I {src} -j {dst}'"
              for src, dst in jumps]
    return lines


def unit(comment: str, description: str, lines: Iterable[str]) -> str:
    """The unit file: ``comment`` (its own ``#`` lines, newline-terminated) says why it exists;
    a oneshot that stays active, part of docker.service so it runs again when Docker starts."""
    body = "\n".join(lines)
    return f"""\
{comment}[Unit]
Description={description}
After=docker.service
PartOf=docker.service

[Service]
Type=oneshot
RemainAfterExit=yes
{body}

[Install]
WantedBy=docker.service
"""


_SKIP_IFACE = re.compile(r"^(docker0|docker_gwbridge|br-|veth|lo$)")


def own_addresses(ctx: StepContext, host: str) -> set[str]:
    """The global IPv4 addresses of ``host``'s own interfaces (a public one too), not Docker's
    bridges: every address a container could aim at to reach that host. Empty without connections."""
    found: set[str] = set()
    if ctx.connections is not None:
        out = ctx.connections.get(host).run("ip -4 -o addr show scope global", sudo=False)
        for iface, ip in re.findall(r"^\d+:\s+(\S+)\s+inet\s+(\d+\.\d+\.\d+\.\d+)/", out.stdout, re.M):
            if not _SKIP_IFACE.match(iface.split("@")[0]):
                found.add(ip)
    return found
