"""High availability of the classic track (seed 000): more Consul servers, and a second Swarm
manager started with ``--replication`` on a node ([classic] consul_servers, replica_manager).

Why Python here: verify compares what every Consul server and every manager says of the
others (one leader, N peers; one primary, the others replicas pointing at it), and names the
one that does not answer together with who serves now. The commands a 2016 admin typed stay in
the recipes (222-classic-consul-servers, 232-classic-replica-manager).
"""

from __future__ import annotations

import json
import shlex

from hubwizard.actions.classic import client_flags
from hubwizard.actions.swarm_stand_in import NO_PRIMARY
from hubwizard.core.config import Site
from hubwizard.core.render import CONSUL_PORT, SWARM_MANAGER_PORT
from hubwizard.engine.calls import CallResult, StepContext, register

STAND_IN_NOTE = ("ran on a stand-in: the lab's Consul servers are static pages (no Raft: the hub's is "
                 "always the leader), and the managers elect their primary by polling each other, not "
                 "through a Consul lock; the failover itself (a replica answering when the primary is gone) "
                 "is real for the stand-in's API")


# ----------------------------------------------------------------------- pure parts


def status_pairs(text: str) -> dict[str, str]:
    """`docker info --format '{{json .SystemStatus}}'` -> {"Role": ..., "Primary": ...} (top-level
    pairs only; the per-node lines start with a space)."""
    try:
        pairs = json.loads(text.strip().splitlines()[-1]) if text.strip() else None
    except ValueError:
        return {}
    if not isinstance(pairs, list):
        return {}
    return {str(p[0]): str(p[1]) for p in pairs
            if isinstance(p, list) and len(p) == 2 and not str(p[0]).startswith(" ")}


def manager_problems(answers: dict[str, tuple[str, dict[str, str] | None, str]]) -> list[str]:
    """Lines for what is wrong with the managers. ``answers``: name -> (ADDR:4000, its status
    pairs or None when it did not answer, the output tail). Exactly one primary; every replica
    names it as its primary; each silent manager named with who serves instead."""
    problems = []
    roles = {name: (pairs or {}).get("Role", "") for name, (_, pairs, _) in answers.items() if pairs is not None}
    primaries = [name for name, role in roles.items() if role == "primary"]
    serving = (f"; {primaries[0]} ({answers[primaries[0]][0]}) is primary now and answers `docker -H "
               f"{answers[primaries[0]][0]}`" if len(primaries) == 1 else "")
    for name, (addr, pairs, tail) in answers.items():
        if pairs is None:
            problems.append(f"the swarm manager on {name} ({addr}) does not answer: {tail.strip()[-200:] or 'no output'}"
                            f"{serving}")
        elif roles[name] not in ("primary", "replica"):
            problems.append(f"the manager on {name} ({addr}) reports no replication role (started without "
                            f"--replication?): {pairs}")
    if not primaries and roles:
        problems.append("No elected primary cluster manager: no manager is primary (" +
                        ", ".join(f"{n}: {r or '?'}" for n, r in roles.items()) + "); Consul decides it")
    elif len(primaries) > 1:
        problems.append(f"more than one primary: {', '.join(primaries)}")
    elif primaries:
        want = answers[primaries[0]][0]
        for name, role in roles.items():
            primary = (answers[name][1] or {}).get("Primary", "")
            if role == "replica" and primary != want:
                problems.append(f"the replica on {name} names {primary or 'no'} primary, not {primaries[0]} ({want})")
    return problems


def consul_problems(answers: dict[str, tuple[str, str | None, list[str] | None]], servers: int) -> list[str]:
    """Lines for what is wrong with the Consul servers. ``answers``: name -> (ADDR:8500, the leader
    it names or None when it did not answer, its peers or None). One leader named by all, each
    listing ``servers`` peers."""
    problems, leaders = [], set()
    for name, (addr, leader, peers) in answers.items():
        if leader is None:
            problems.append(f"Consul on {name} ({addr}) does not answer")
            continue
        if not leader:
            problems.append(f"Consul on {name} ({addr}) has no leader")
        leaders.add(leader)
        if peers is not None and len(peers) != servers:
            problems.append(f"Consul on {name} ({addr}) lists {len(peers)} server(s) ({', '.join(peers)}), "
                            f"not {servers}: a server did not join")
    if len(leaders - {""}) > 1:
        problems.append(f"the Consul servers name different leaders: {', '.join(sorted(leaders))}")
    return problems


def why_silent(output: str) -> str:
    """The line of the docker CLI's output that says why a manager did not answer (the connection
    error, not the --format template's complaint about the missing answer that follows it)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    keys = ("cannot connect", "connection refused", "error during connect", "certificate", NO_PRIMARY.lower(),
            "timeout", "no route")
    return next((line for line in lines if any(k in line.lower() for k in keys)), lines[-1] if lines else "")


def ha_wanted(site: Site) -> bool:
    """Whether the site asks for more than the tutorial's single Consul and manager."""
    return site.classic.consul_servers > 1 or site.classic.replica_manager is not None


# ----------------------------------------------------------------------- calls (verify, from the hub)


def _ip(ctx: StepContext, name: str) -> str:
    host = ctx.site.host(name)
    return ctx.facts.ips.get(name) or (ctx.facts.hub_ip if host == ctx.site.hub_host else host.address)


def _curl_json(ctx: StepContext, url: str) -> object | None:
    res = ctx.run(f"curl -fsS --max-time 5 {shlex.quote(url)}", timeout=30)
    if not res.ok:
        return None
    try:
        return json.loads(res.stdout)
    except ValueError:
        return None


@register("classic_consul_members")
def classic_consul_members(ctx: StepContext) -> CallResult:
    """From the hub: every Consul server answers, names one leader and lists every server."""
    answers: dict[str, tuple[str, str | None, list[str] | None]] = {}
    for host in ctx.site.consul_hosts:
        base = f"http://{_ip(ctx, host.name)}:{CONSUL_PORT}/v1/status"
        leader = _curl_json(ctx, f"{base}/leader")
        peers = _curl_json(ctx, f"{base}/peers")
        answers[host.name] = (f"{_ip(ctx, host.name)}:{CONSUL_PORT}", leader if isinstance(leader, str) else None,
                              [str(p) for p in peers] if isinstance(peers, list) else None)
    problems = consul_problems(answers, ctx.site.classic.consul_servers)
    stood_in = f" ({STAND_IN_NOTE})" if ctx.site.classic.lab_stand_ins else ""
    if problems:
        return CallResult(False, "\n".join(problems) + stood_in)
    leader = next(a[1] for a in answers.values())
    return CallResult(True, f"{len(answers)} Consul server(s) ({', '.join(answers)}), leader {leader}{stood_in}")


@register("classic_managers")
def classic_managers(ctx: StepContext) -> CallResult:
    """From the hub: `docker -H MANAGER:4000 info` on every manager shows its replication role:
    one primary, the others replicas naming it."""
    answers: dict[str, tuple[str, dict[str, str] | None, str]] = {}
    for host in ctx.site.manager_hosts:
        addr = f"{_ip(ctx, host.name)}:{SWARM_MANAGER_PORT}"
        cli = f"timeout 30 docker -H tcp://{addr} {client_flags(ctx.site)}"
        res = ctx.run(f"{cli} info --format {shlex.quote('{{json .SystemStatus}}')}", timeout=60)
        pairs = status_pairs(res.stdout) if res.ok else None
        output = res.output
        if not pairs:  # `info --format` says little when nobody answers; `version` names the connection error
            output += "\n" + ctx.run(f"{cli} version --format {shlex.quote('{{.Server.Version}}')}", timeout=60).output
        answers[host.name] = (addr, pairs if pairs else None, why_silent(output))
    problems = manager_problems(answers)
    stood_in = f" ({STAND_IN_NOTE})" if ctx.site.classic.lab_stand_ins else ""
    if problems:
        return CallResult(False, "\n".join(problems) + stood_in)
    roles = ", ".join(f"{n} {a[1]['Role']}" for n, a in answers.items() if a[1])
    return CallResult(True, f"{len(answers)} manager(s) answer: {roles}{stood_in}")
