"""[swarm] managers = 3: the hub and the first two nodes hold the swarm's state together.

Why: with the hub as the only manager, losing the hub's machine loses the swarm (no one can
schedule, update or list anything). Raft needs a majority, so three managers keep answering
when any one of them is lost. The swarm-join step makes the two nodes managers (a new node
joins with the manager join token, a node already in the swarm as a worker is promoted, both
through the Docker API: no token is printed or logged); verify counts the managers and says
whether the quorum holds, naming a manager that does not answer and how to bring it back.

The limit (README): the hub's service and its database volume stay on the hub (a node label
pins them), so the swarm survives the loss of another manager, not of the hub's own disk.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import docker.errors

from hubwizard.core.config import Site
from hubwizard.engine.calls import CallResult, StepContext, register
from hubwizard.remote import dockerapi

HUB_LABEL = "org.hubwizard.hub"  # on the hub's Swarm node: where the hub service runs


def wanted_role(site: Site, host: str) -> str:
    """The Swarm role a node of this site should have: manager for the first managers-1 nodes."""
    return "manager" if host in {h.name for h in site.swarm_manager_nodes} else "worker"


_ONE_AT_A_TIME = threading.Lock()


@contextlib.contextmanager
def manager_turn(role: str) -> Iterator[None]:
    """Managers join or are promoted one at a time (the nodes' steps run in parallel): Raft adds
    one member at a time, and a second manager joining while the first still catches up can
    find no quorum. Workers go on at once."""
    if role != "manager":
        yield
        return
    with _ONE_AT_A_TIME:
        yield


def wait_reachable(ctx: StepContext, node_id: str, timeout: float = 90.0) -> bool:
    """Until the hub lists ``node_id`` as a reachable manager (True), or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    with dockerapi.client_for(ctx.reach(ctx.site.hub_host.name)) as hub:
        while True:
            status = hub.nodes.get(node_id).attrs.get("ManagerStatus") or {}
            if status.get("Reachability") == "reachable":
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(2)


def set_role(ctx: StepContext, node_id: str, role: str) -> None:
    """Promote or demote a node, on the hub (a manager), through the Docker API."""
    with dockerapi.client_for(ctx.reach(ctx.site.hub_host.name)) as hub:
        node = hub.nodes.get(node_id)
        spec = dict(node.attrs["Spec"])
        spec["Role"] = role
        node.update(spec)


@dataclass(frozen=True)
class Manager:
    """One manager as the swarm lists it, named as the site file names it when it can."""

    name: str
    reachable: bool
    leader: bool


def managers_of(nodes: list[dict[str, Any]], names_by_ip: dict[str, str]) -> list[Manager]:
    """The managers among ``nodes`` (the Docker API's node objects)."""
    out = []
    for node in nodes:
        status = node.get("ManagerStatus")
        if node.get("Spec", {}).get("Role") != "manager" or not status:
            continue
        ip = str(status.get("Addr", "")).rsplit(":", 1)[0] or node.get("Status", {}).get("Addr", "")
        name = names_by_ip.get(ip) or node.get("Description", {}).get("Hostname") or ip
        out.append(Manager(name, status.get("Reachability") == "reachable", bool(status.get("Leader"))))
    return sorted(out, key=lambda m: m.name)


def quorum(managers: list[Manager], wanted: int, hub: str) -> CallResult:
    """Verify's verdict on the managers: how many, which answer, and whether the quorum holds."""
    down = [m.name for m in managers if not m.reachable]
    up = len(managers) - len(down)
    names = ", ".join(f"{m.name}{' (leader)' if m.leader else ''}" for m in managers)
    if down:
        held = up > len(managers) // 2
        verdict = (f"the swarm keeps its quorum ({up} of {len(managers)}) but survives no further loss" if held
                   else f"quorum is LOST ({up} of {len(managers)}): nothing can be scheduled or changed")
        return CallResult(False, f"manager{'s' if len(down) > 1 else ''} {', '.join(down)} unreachable: {verdict}; "
                          f"start dockerd on {', '.join(down)} (`systemctl start docker`) and check 2377/tcp "
                          f"between the managers")
    if len(managers) != wanted:
        return CallResult(False, f"the swarm has {len(managers)} manager(s) ({names}), swarm.managers = {wanted}: "
                          "run `hubwizard apply --only swarm-join` (it promotes or demotes the nodes)")
    if wanted == 1:
        return CallResult(True, f"1 manager ({names}): the swarm depends on {hub} alone")
    return CallResult(True, f"{len(managers)} managers, all reachable ({names}): the swarm survives the loss of one")


@register("swarm_quorum")
def swarm_quorum(ctx: StepContext) -> CallResult:
    """Verify (on the hub): the swarm has [swarm] managers managers, all reachable, with a leader."""
    names = {ip: name for name, ip in ctx.facts.ips.items()}
    names.update({h.internal_address or h.address: h.name for h in ctx.site.active_hosts if h.name not in ctx.facts.ips})
    try:
        with dockerapi.client_for(ctx.transport) as client:
            nodes = [n.attrs for n in client.nodes.list()]
    except docker.errors.APIError as exc:
        return CallResult(False, f"the hub {ctx.host.name} cannot list the swarm's nodes ({exc.explanation or exc}): "
                          "with more than half of the managers down the swarm has no leader; start dockerd on the "
                          "other managers")
    except (docker.errors.DockerException, OSError) as exc:
        return CallResult(False, f"the Docker API on {ctx.host.name} does not answer (is dockerd running?): "
                          f"{type(exc).__name__}")
    return quorum(managers_of(nodes, names), ctx.site.swarm.managers, ctx.host.name)


def pin_hub_node(ctx: StepContext) -> None:
    """Label the hub's own Swarm node so the hub service (and its database volume) stays there
    and users' servers stay off it, whichever machines are managers."""
    with dockerapi.client_for(ctx.transport) as client:
        node = client.nodes.get(client.info()["Swarm"]["NodeID"])
        spec = dict(node.attrs["Spec"])
        labels = dict(spec.get("Labels") or {})
        if labels.get(HUB_LABEL) != "true":
            spec["Labels"] = {**labels, HUB_LABEL: "true"}
            node.update(spec)
