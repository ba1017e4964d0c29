"""The swarm guard: Swarm's ports answer the cluster's hosts only.

Why: 2377/tcp (the managers' API: join, the raft log), 7946/tcp+udp (gossip) and 4789/udp
(VXLAN, the overlay's traffic, plain unless the network is encrypted) listen on every
interface. Another machine on the network could inject overlay packets or talk to the
manager; a user's server (a container) could too, through its node. So on every host:

  HUBWIZARD-SWARM-IN, jumped to from INPUT: those ports from a cluster host (every host of the
      site file, spares included; not the whole [site] subnet, which holds other machines too)
      or loopback go on to the rest of INPUT; from anywhere else they are dropped;
  HUBWIZARD-SWARM-FWD, jumped to from DOCKER-USER: containers on this host -> any cluster
      host's swarm ports are refused (their traffic would leave with the node's address).

With [registry] self_hosted the hub's registry port (5000, plain HTTP) is guarded the same way.
A systemd unit holds the rules and runs again whenever Docker starts, as the NFS guard does
(hubwizard.actions.nfs_guard); the chains are refilled whole each time.
"""

from __future__ import annotations

from hubwizard.actions import guard_unit
from hubwizard.engine.calls import CallResult, StepContext, register

UNIT_PATH = "/etc/systemd/system/hubwizard-swarm-guard.service"
UNIT = "hubwizard-swarm-guard.service"
IN_CHAIN = "HUBWIZARD-SWARM-IN"
FWD_CHAIN = "HUBWIZARD-SWARM-FWD"
PORTS = (("tcp", 2377), ("tcp", 7946), ("udp", 7946), ("udp", 4789))
REGISTRY_PORT = 5000  # recipes/080-registry.yaml
IPT = guard_unit.IPT
JUMPS = (("INPUT", IN_CHAIN), ("DOCKER-USER", FWD_CHAIN))
REJECT = guard_unit.REJECT
IP6T = "/usr/sbin/ip6tables -w"
# dockerd listens on [::] too; the cluster advertises IPv4 addresses, so IPv6 gets loopback only
V6_RULES = tuple(f"INPUT -p {proto} --dport {port} ! -i lo -j DROP" for proto, port in PORTS)

UNDO_SCRIPT = "; ".join([
    f"systemctl disable --now {UNIT} >/dev/null 2>&1", f"rm -f {UNIT_PATH}", "systemctl daemon-reload",
    *(f"while iptables -w -D {src} -j {dst} 2>/dev/null; do :; done" for src, dst in JUMPS),
    *(f"iptables -w -F {c} 2>/dev/null; iptables -w -X {c} 2>/dev/null" for c in (IN_CHAIN, FWD_CHAIN)),
    *(f"ip6tables -w -D {rule} 2>/dev/null" for rule in V6_RULES),
    "true",
])


def cluster_sources(ctx: StepContext) -> list[str]:
    """Who may reach the swarm ports: every host of the site file (its internal address as the
    facts know it, else the site file's), spares included so add-node finds them open. Not
    [site] subnet: other machines live there too (the lab's gateway, a printer, a laptop)."""
    ips = dict(getattr(ctx.facts, "ips", {}) or {})
    return sorted({ips.get(h.name) or h.internal_address or h.address for h in ctx.site.hosts})


def ports_for(site) -> tuple[tuple[str, int], ...]:
    """Swarm's ports, and the self-hosted registry's (it speaks plain HTTP: cluster hosts only)."""
    return (*PORTS, ("tcp", REGISTRY_PORT)) if site.registry.self_hosted else PORTS


def guard_rules(sources: list[str], ports: tuple[tuple[str, int], ...] = PORTS) -> list[str]:
    """The rules (iptables arguments, chain first), in order."""
    rules = [f"{IN_CHAIN} -i lo -j RETURN"]
    for proto, port in ports:
        rules += [f"{IN_CHAIN} -s {src} -p {proto} --dport {port} -j RETURN" for src in sources]
        rules.append(f"{IN_CHAIN} -p {proto} --dport {port} -j DROP")
    rules += [f"{FWD_CHAIN} -d {dst} -p {proto} --dport {port} -j {REJECT[proto]}"
              for dst in sources for proto, port in ports]
    return rules


def unit_text(sources: list[str], ports: tuple[tuple[str, int], ...] = PORTS) -> str:
    lines = guard_unit.iptables_lines((IN_CHAIN, FWD_CHAIN), guard_rules(sources, ports), JUMPS)
    lines += [f"ExecStart=-/bin/sh -c '{IP6T} -C {rule} 2>/dev/null || {IP6T} -I {rule}'" for rule in V6_RULES]
    return guard_unit.unit(f"""\
# Written by hubwizard: Swarm's ports (2377/tcp, 7946/tcp+udp, 4789/udp) answer the cluster's
# hosts only ({", ".join(sources)}); other machines are dropped, and containers on this host
# cannot reach any host's swarm ports. Over IPv6 (the cluster speaks IPv4) only loopback.
# Re-applied whenever Docker starts.
# Do not edit by hand: `hubwizard apply` rewrites it; `hubwizard teardown` removes it.
""", "hubwizard: Swarm ports for the cluster's hosts only", lines)


GUARD = guard_unit.Guard(UNIT, UNIT_PATH, "swarm guard", "swarm-guard", "swarm ports open to other machines")


def _read(t: guard_unit.Target, sources: list[str], ports) -> guard_unit.Target:
    """``t``'s swarm guard as it is (guard_unit's shared flow)."""
    rules = [*guard_rules(sources, ports), *(f"{src} -j {dst}" for src, dst in JUMPS)]
    return guard_unit.read(GUARD, t, unit_text(sources, ports), rules, V6_RULES)


def _install(t: guard_unit.Target, sources: list[str], ports) -> CallResult:
    error, changed = guard_unit.converge(GUARD, _read(t, sources, ports), lambda t: _read(t, sources, ports))
    if error:
        return CallResult(False, error)
    if not changed:
        return CallResult(True, f"{t.name}: swarm guard already in place", changed=False)
    return CallResult(True, f"{t.name}: swarm ports open to {', '.join(sources)} only", changed=True)


def _here(ctx: StepContext) -> guard_unit.Target:
    return guard_unit.target(ctx, ctx.host.name, UNIT_PATH)


@register("swarm_guard_current")
def swarm_guard_current(ctx: StepContext) -> CallResult:
    """Check (read-only): the unit is as wanted and enabled, every rule in the firewall."""
    sources = cluster_sources(ctx)
    failure = guard_unit.check_failure(GUARD, _read(_here(ctx), sources, ports_for(ctx.site)))
    return CallResult(False, failure) if failure else CallResult(True, f"swarm ports open to {', '.join(sources)} only")


@register("swarm_guard")
def swarm_guard(ctx: StepContext) -> CallResult:
    """Apply: write the unit, enable it, run it; confirm every rule."""
    return _install(_here(ctx), cluster_sources(ctx), ports_for(ctx.site))


@register("swarm_guard_admit")
def swarm_guard_admit(ctx: StepContext) -> CallResult:
    """Apply, before a node joins: every other active host's guard lists the site's hosts as they
    are now (a node added to the site file since is let in), so the join and gossip get through."""
    sources = cluster_sources(ctx)
    changed = []
    for host in ctx.site.active_hosts:
        if host.name == ctx.host.name or ctx.connections is None:
            continue
        t = guard_unit.target(ctx, host.name, UNIT_PATH)
        if not t.run(f"test -e {UNIT_PATH}").ok:
            continue  # no guard there yet: nothing shuts this node out
        res = _install(t, sources, ports_for(ctx.site))
        if not res.ok:
            return res
        if res.changed:
            changed.append(host.name)
    return CallResult(True, f"swarm guard of {', '.join(changed)} now lets {ctx.host.name} in" if changed
                      else "every host's swarm guard already lets this node in", changed=bool(changed))


@register("swarm_guard_in_place")
def swarm_guard_in_place(ctx: StepContext) -> CallResult:
    """Verify: rules in place and the unit enabled (so they come back when Docker starts)."""
    sources = cluster_sources(ctx)
    failure = guard_unit.verify_failure(GUARD, _read(_here(ctx), sources, ports_for(ctx.site)))
    return CallResult(False, failure) if failure else CallResult(
        True, f"{ctx.host.name}: 2377/7946/4789 answer {', '.join(sources)} only; {UNIT} enabled")
