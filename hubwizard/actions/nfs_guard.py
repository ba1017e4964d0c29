"""The NFS guard: users' containers must never reach the NFS server's ports 2049 and 111.

Why: a user's server runs as a container on a node; its traffic leaves the node with the
node's address, which the export trusts, and Docker lets a container bind a low port, so
NFS's AUTH_SYS believes whatever uid it claims. Without this guard any student reads and
writes every home. The nodes' own processes (dockerd mounting a user's volume, libnfs'
test write) are not forwarded traffic and keep their access.

Two chains, refilled whole each time (so a changed NFS address leaves no stale rule):
  HUBWIZARD-NFS-FWD, jumped to from DOCKER-USER: containers on this host -> the NFS
      server's addresses (the FORWARD path, on every node);
  HUBWIZARD-NFS-IN, jumped to from INPUT: containers -> this host itself, through Docker's
      bridges (on the NFS server, and on a one-host site where users' servers run there).
A systemd unit holds the rules, one per line for an admin to read, and runs again whenever
Docker starts (Docker may re-create its chains), like the hub-port guard.
"""

from __future__ import annotations

from hubwizard.actions import guard_unit
from hubwizard.engine.calls import CallResult, StepContext, register

UNIT_PATH = "/etc/systemd/system/hubwizard-nfs-guard.service"
UNIT = "hubwizard-nfs-guard.service"
FWD_CHAIN = "HUBWIZARD-NFS-FWD"
IN_CHAIN = "HUBWIZARD-NFS-IN"
PORTS = (2049, 111)  # nfsd, rpcbind
PROTOS = ("tcp", "udp")
BRIDGES = ("docker0", "docker_gwbridge", "br-+")  # the host side of containers' networks
IPT = guard_unit.IPT
JUMPS = (("DOCKER-USER", FWD_CHAIN), ("INPUT", IN_CHAIN))

# teardown: unhook and delete both chains, remove the unit (idempotent)
UNDO_SCRIPT = "; ".join([
    f"systemctl disable --now {UNIT} >/dev/null 2>&1", f"rm -f {UNIT_PATH}", "systemctl daemon-reload",
    *(f"while iptables -w -D {src} -j {dst} 2>/dev/null; do :; done" for src, dst in JUMPS),
    *(f"iptables -w -F {c} 2>/dev/null; iptables -w -X {c} 2>/dev/null" for c in (FWD_CHAIN, IN_CHAIN)),
    "true",
])
UNDO_PROBE = " || ".join([f"test -e {UNIT_PATH}",
                           *(f"iptables -w -n -L {c} >/dev/null 2>&1" for c in (FWD_CHAIN, IN_CHAIN))])


# refused at once (a TCP reset, an ICMP port unreachable), so a user's tool fails fast and
# says "connection refused" instead of hanging
REJECT = guard_unit.REJECT


def drop_rules(nfs_addresses: list[str]) -> list[str]:
    """The rules (iptables arguments, chain first) that refuse containers' NFS traffic."""
    rules = [f"{FWD_CHAIN} -d {ip} -p {proto} --dport {port} -j {REJECT[proto]}"
             for ip in nfs_addresses for proto in PROTOS for port in PORTS]
    rules += [f"{IN_CHAIN} -i {bridge} -p {proto} --dport {port} -j {REJECT[proto]}"
              for bridge in BRIDGES for proto in PROTOS for port in PORTS]
    return rules


def unit_text(nfs_addresses: list[str]) -> str:
    """The systemd unit: make both chains, fill them, hook them first into DOCKER-USER and INPUT."""
    return guard_unit.unit(f"""\
# Written by hubwizard: users' containers must not reach the NFS server ({", ".join(nfs_addresses)})
# on ports {"/".join(map(str, PORTS))} (tcp, udp). NFS trusts the client's address and the uid it claims;
# a container's traffic leaves this host with the host's address, so without these rules any
# user's server could read and write every user's folder. This host's own processes (dockerd
# mounting users' volumes) are not forwarded and are not affected. Re-applied whenever Docker starts.
# Do not edit by hand: `hubwizard apply` rewrites it; `hubwizard teardown` removes it.
""", "hubwizard: containers cannot reach the NFS server",
        guard_unit.iptables_lines((FWD_CHAIN, IN_CHAIN), drop_rules(nfs_addresses), JUMPS))


def nfs_addresses(ctx: StepContext) -> list[str]:
    """Every IPv4 address of the NFS server a container could aim at: its internal address and
    the other global addresses of its own interfaces (a public one too), not Docker's bridges."""
    found = {ctx.facts.nfs_ip, *guard_unit.own_addresses(ctx, ctx.site.nfs_host.name)}
    return sorted(found, key=lambda a: tuple(int(p) for p in a.split(".")))


GUARD = guard_unit.Guard(UNIT, UNIT_PATH, "NFS guard", "nfs-guard", "containers can reach the NFS server")


def _read(ctx: StepContext, t: guard_unit.Target | None = None) -> tuple[list[str], guard_unit.Target]:
    """This host's guard as it is (guard_unit's shared flow), and the NFS server's addresses."""
    addresses = nfs_addresses(ctx)
    rules = [*drop_rules(addresses), *(f"{src} -j {dst}" for src, dst in JUMPS)]
    t = t or guard_unit.target(ctx, ctx.host.name, UNIT_PATH)
    return addresses, guard_unit.read(GUARD, t, unit_text(addresses), rules)


@register("nfs_guard_current")
def nfs_guard_current(ctx: StepContext) -> CallResult:
    """Check (read-only): the unit is as wanted and enabled, and every rule is in the firewall."""
    addresses, t = _read(ctx)
    failure = guard_unit.check_failure(GUARD, t)
    return CallResult(False, failure) if failure else CallResult(
        True, f"containers cannot reach {', '.join(addresses)} on 2049/111")


@register("nfs_guard")
def nfs_guard(ctx: StepContext) -> CallResult:
    """Apply: write the unit, enable it, run it; confirm every rule is in place."""
    addresses, t = _read(ctx)
    error, changed = guard_unit.converge(GUARD, t, lambda t: _read(ctx, t)[1])
    if error:
        return CallResult(False, error)
    if not changed:
        return CallResult(True, f"NFS guard already in place ({', '.join(addresses)})", changed=False)
    return CallResult(True, f"containers on {ctx.host.name} cannot reach {', '.join(addresses)} on 2049/111",
                      changed=True)


@register("nfs_guard_in_place")
def nfs_guard_in_place(ctx: StepContext) -> CallResult:
    """Verify: the unit is enabled (so it runs again when Docker starts) and every rule is there."""
    addresses, t = _read(ctx)
    failure = guard_unit.verify_failure(GUARD, t)
    return CallResult(False, failure) if failure else CallResult(
        True, f"{ctx.host.name}: DOCKER-USER and INPUT refuse containers' traffic to "
              f"{', '.join(addresses)} ports 2049/111 (tcp, udp); {UNIT} enabled")
