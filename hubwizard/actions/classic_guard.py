"""The Consul guard (classic track): only the cluster's hosts reach Consul on the hub, never a
container and never a stranger.

Why: the 2015 Consul the legacy Swarm meets in has no authentication on its HTTP API (8500):
whoever reaches it can rewrite the discovery entries (add an engine of theirs to the cluster,
drop the nodes) and, with script checks, run commands in Consul's container. The stand-in of
the lab cannot do Consul ACLs either, so the network is the defence: the same mechanism as the
NFS guard (hubwizard.actions.nfs_guard), a systemd unit holding iptables rules, re-applied
whenever Docker starts.

Two chains, refilled whole each time:
  HUBWIZARD-CONSUL-FWD, jumped to from DOCKER-USER (every host): a NEW connection to the hub's
      addresses on the guarded ports from a container of this host is refused; conntrack's
      original destination is matched, so a port Docker publishes (DNAT) is covered too. On
      the hub, also a container aiming at Consul's container directly through a bridge.
  HUBWIZARD-CONSUL-IN, jumped to from INPUT (the hub only): the guarded ports accept the
      cluster's hosts (their own addresses, so not their containers' traffic, which the FWD
      chain refuses before it leaves them) and refuse everyone else, containers on the hub too.
  HUBWIZARD-CONSUL-OUT, jumped to from OUTPUT (every host): on the hosts themselves only root
      connects (the swarm agent and manager run as root on their host's network); a user with
      a shell on a node does not.
The guarded ports: Consul's 8500, and the manager's 4000 when it is not behind TLS client
certificates ([classic] docker_tls = false); with more Consul servers ([classic] consul_servers)
also their server ports 8300-8302 (tcp), on every server's address, and the INPUT chain runs on
every host that serves Consul or a manager (the hub, and the nodes named for them).
"""

from __future__ import annotations

import ipaddress

from hubwizard.actions import guard_unit
from hubwizard.actions.guard_unit import REJECT
from hubwizard.actions.nfs_guard import BRIDGES
from hubwizard.core.render import CONSUL_PORT, SWARM_MANAGER_PORT
from hubwizard.engine.calls import CallResult, StepContext, register

UNIT_PATH = "/etc/systemd/system/hubwizard-consul-guard.service"
UNIT = "hubwizard-consul-guard.service"
FWD_CHAIN = "HUBWIZARD-CONSUL-FWD"
IN_CHAIN = "HUBWIZARD-CONSUL-IN"
OUT_CHAIN = "HUBWIZARD-CONSUL-OUT"
NEW = "-m conntrack --ctstate NEW"


CONSUL_SERVER_PORTS = (8300, 8301, 8302)  # server RPC, Serf LAN, Serf WAN: between servers


def guarded_ports(docker_tls: bool, consul_servers: int = 1) -> tuple[int, ...]:
    """8500 always; 4000 too when the manager does not verify client certificates; the
    servers' own ports when there are several Consul servers."""
    ports = (CONSUL_PORT,) if docker_tls else (CONSUL_PORT, SWARM_MANAGER_PORT)
    return ports + (CONSUL_SERVER_PORTS if consul_servers > 1 else ())


def serving_hosts(site) -> list[str]:
    """The hosts that serve Consul or a manager: they get the INPUT chain."""
    return list(dict.fromkeys(h.name for h in [*site.consul_hosts, *site.manager_hosts]))


def _reject(port: int) -> str:
    return f"-p tcp --dport {port} {NEW} -j {REJECT['tcp']}"


def fwd_rules(hub_addresses: list[str], allowed: list[str], ports: tuple[int, ...], on_hub: bool) -> list[str]:
    """DOCKER-USER: the cluster's hosts pass (traffic Docker forwards to a published Consul);
    a container's new connection to the hub's guarded ports is refused."""
    rules = [f"{FWD_CHAIN} -s {src} -p tcp -m conntrack --ctorigdstport {port} -j RETURN"
             for port in ports for src in allowed]
    rules += [f"{FWD_CHAIN} -p tcp -m conntrack --ctstate NEW --ctorigdst {dst} --ctorigdstport {port} "
              f"-j {REJECT['tcp']}" for port in ports for dst in hub_addresses]
    if on_hub:  # a container next to Consul's, aiming at its bridge address
        rules += [f"{FWD_CHAIN} -o {bridge} {_reject(port)}" for port in ports for bridge in BRIDGES]
    return rules


def out_rules(hub_addresses: list[str], ports: tuple[int, ...]) -> list[str]:
    """OUTPUT (every host): on a cluster host only root reaches the guarded ports (the swarm
    agent and manager run as root; a student's shell on a node does not)."""
    return [f"{OUT_CHAIN} -p tcp -m conntrack --ctstate NEW --ctorigdst {dst} --ctorigdstport {port} "
            f"-m owner ! --uid-owner 0 -j {REJECT['tcp']}" for port in ports for dst in hub_addresses]


def in_rules(allowed: list[str], ports: tuple[int, ...]) -> list[str]:
    """INPUT on the hub: the cluster's hosts pass, everyone else is refused."""
    rules = [f"{IN_CHAIN} -s {src} -p tcp --dport {port} -j RETURN" for port in ports for src in allowed]
    return rules + [f"{IN_CHAIN} {_reject(port)}" for port in ports]


def jumps(on_hub: bool) -> list[tuple[str, str]]:
    return [("DOCKER-USER", FWD_CHAIN), ("OUTPUT", OUT_CHAIN), *([("INPUT", IN_CHAIN)] if on_hub else [])]


def all_rules(hub_addresses: list[str], allowed: list[str], ports: tuple[int, ...], on_hub: bool) -> list[str]:
    """Every rule of this host, chain first (iptables -A arguments)."""
    return [*fwd_rules(hub_addresses, allowed, ports, on_hub), *out_rules(hub_addresses, ports),
            *(in_rules(allowed, ports) if on_hub else [])]


def unit_text(hub_addresses: list[str], allowed: list[str], ports: tuple[int, ...], on_hub: bool) -> str:
    """The systemd unit: make the chains, fill them, hook them first into DOCKER-USER (and INPUT)."""
    chains = [FWD_CHAIN, OUT_CHAIN, *([IN_CHAIN] if on_hub else [])]
    port_list = "/".join(map(str, ports))
    return guard_unit.unit(f"""\
# Written by hubwizard (classic track): Consul on the hub has no authentication, so only the
# cluster's hosts ({", ".join(allowed)}) may reach the hub ({", ".join(hub_addresses)})
# on tcp {port_list}; containers (users' servers) and every other machine are refused.
# On the hosts themselves only root may connect (the swarm agents and the manager: root, on
# their host's network), not a user's shell.
# Re-applied whenever Docker starts. Do not edit by hand: `hubwizard apply` rewrites it.
""", f"hubwizard: only the cluster's hosts reach Consul (tcp {port_list})",
        guard_unit.iptables_lines(chains, all_rules(hub_addresses, allowed, ports, on_hub), jumps(on_hub)))


def _is_ipv4(value: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(value), ipaddress.IPv4Address)
    except ValueError:
        return False


def _sorted(addresses: set[str]) -> list[str]:
    return sorted(addresses, key=lambda a: tuple(int(p) for p in a.split(".")))


def hub_addresses(ctx: StepContext) -> list[str]:
    """The hub's internal address and every other global IPv4 address of its own interfaces;
    with more Consul servers or a replica manager, their nodes' internal addresses too."""
    found = {ctx.facts.hub_ip, *guard_unit.own_addresses(ctx, ctx.site.hub_host.name)}
    found |= {ctx.facts.ips.get(name, "") for name in serving_hosts(ctx.site)[1:]}
    return _sorted({a for a in found if _is_ipv4(a)})


def cluster_hosts(ctx: StepContext, hub: list[str]) -> list[str]:
    """Who may reach Consul: each host's own address (internal, and its SSH address when an
    IP), the hub's addresses, and the loopback. Single addresses, never a subnet."""
    found = {"127.0.0.1", *hub}
    for host in ctx.site.active_hosts:
        found |= {a for a in (ctx.facts.ips.get(host.name, ""), host.internal_address or "", host.address)
                  if _is_ipv4(a)}
    return _sorted(found)


GUARD = guard_unit.Guard(UNIT, UNIT_PATH, "Consul guard", "classic-consul-guard",
                         "Consul is open to containers or strangers")


def _read(ctx: StepContext, target: guard_unit.Target) -> guard_unit.Target:
    """Fill ``target`` with its wanted unit and what its firewall lacks now (guard_unit's shared flow)."""
    hub = hub_addresses(ctx)
    allowed = cluster_hosts(ctx, hub)
    ports = guarded_ports(ctx.site.classic.docker_tls, ctx.site.classic.consul_servers)
    on_hub = target.name in serving_hosts(ctx.site)
    rules = [*all_rules(hub, allowed, ports, on_hub), *(f"{src} -j {dst}" for src, dst in jumps(on_hub))]
    where = f"tcp {'/'.join(map(str, ports))} of {', '.join(hub)}"
    target.what = (f"{target.name}: only {', '.join(allowed)} reach {where}" if on_hub
                   else f"{target.name}: its containers cannot reach {where}")
    return guard_unit.read(GUARD, target, unit_text(hub, allowed, ports, on_hub), rules)


def _targets(ctx: StepContext) -> list[guard_unit.Target]:
    """This host; for a node also the hub, whose allowlist must name it (a node added later)."""
    names = [ctx.host.name]
    if ctx.host.name != ctx.site.hub_host.name and ctx.connections is not None:
        names += [n for n in serving_hosts(ctx.site) if n != ctx.host.name]
    return [_read(ctx, guard_unit.target(ctx, name, UNIT_PATH)) for name in names]


@register("consul_guard_current")
def consul_guard_current(ctx: StepContext) -> CallResult:
    """Check (read-only): the unit is as wanted and enabled, and every rule is in the firewall."""
    found = _targets(ctx)
    for t in found:
        if failure := guard_unit.check_failure(GUARD, t, f"{t.name}: "):
            return CallResult(False, failure)
    return CallResult(True, "; ".join(t.what for t in found))


@register("consul_guard")
def consul_guard(ctx: StepContext) -> CallResult:
    """Apply: write the unit, enable it, run it (here, and on the hub when it lacks this node);
    confirm every rule is in place."""
    changed = False
    found = _targets(ctx)
    for t in found:
        error, did = guard_unit.converge(GUARD, t, lambda t: _read(ctx, t))
        if error:
            return CallResult(False, error)
        changed |= did
    return CallResult(True, "; ".join(t.what for t in found), changed=changed)


@register("consul_guard_in_place")
def consul_guard_in_place(ctx: StepContext) -> CallResult:
    """Verify: every rule is there and the unit is enabled (so it comes back with Docker)."""
    found = _targets(ctx)
    for t in found:
        if failure := guard_unit.verify_failure(GUARD, t):
            return CallResult(False, failure)
    return CallResult(True, "; ".join(t.what for t in found) + f"; {UNIT} enabled")
