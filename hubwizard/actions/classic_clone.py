"""A node cloned from another node's disk (the tutorial's way to make nodes), classic track.

Why: a clone made without the tutorial's preparation keeps its source's Docker engine key
(/etc/docker/key.json; /var/lib/docker/engine-id on Docker 23+), so both engines report one ID
and the legacy Swarm refuses the second as a duplicate; it also keeps the source's containers
(a swarm agent advertising the source's address, users' servers). `add-node` finds this by
comparing engine IDs with the site's other hosts, shows the recipe in its plan, and the
classic-engine-id step applies it: remove the copied containers (while dockerd runs, so their
restart policy cannot bring them back), stop dockerd, remove the key, start dockerd (a new ID).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

ENGINE_KEYS = ("/etc/docker/key.json", "/var/lib/docker/engine-id")
STOP = "systemctl stop docker.socket docker.service"
START = "{ systemctl reset-failed docker.service docker.socket 2>/dev/null || true; } && systemctl start docker"


@dataclass
class Clone:
    """What was found on a new node: whose engine ID it shares, and the containers it came with."""

    host: str
    engine: str
    same_as: list[str]
    containers: list[tuple[str, str]] = field(default_factory=list)  # (id, name)

    def recipe(self) -> list[str]:
        return clone_recipe(self.containers)

    def plan_lines(self) -> list[str]:
        """What add-node's plan shows before it asks."""
        names = ", ".join(name for _, name in self.containers) or "none"
        head = (f"{self.host}: engine ID {self.engine} is also {', '.join(self.same_as)}'s: this machine was "
                f"cloned from {self.same_as[0]}'s disk with its Docker engine key, and the classic Swarm refuses "
                f"a duplicate engine. Its containers came with the clone: {names}.")
        return [head, "the clone recipe (classic-engine-id), run before the node joins:",
                *(f"  {cmd}" for cmd in self.recipe())]


def duplicate_of(mine: str, others: dict[str, str]) -> list[str]:
    """The hosts whose engine ID is this one's (none when this engine did not answer)."""
    return sorted(name for name, other in others.items() if mine and other == mine)


def parse_containers(text: str) -> list[tuple[str, str]]:
    """`docker ps -a --format '{{.ID}} {{.Names}}'` -> [(id, name)]."""
    out = []
    for line in text.splitlines():
        cid, _, name = line.strip().partition(" ")
        if cid:
            out.append((cid, name.strip() or cid))
    return out


def clone_recipe(containers: list[tuple[str, str]]) -> list[str]:
    """The commands that make a clone a node of its own, in order."""
    steps = [f"docker rm -f {' '.join(shlex.quote(cid) for cid, _ in containers)}"] if containers else []
    return [*steps, STOP, f"rm -f {' '.join(ENGINE_KEYS)}", START]


def engine_id(transport) -> str:
    return transport.run("docker info --format '{{.ID}}' 2>/dev/null", sudo=True, timeout=30).stdout.strip()


def containers(transport) -> list[tuple[str, str]]:
    res = transport.run("docker ps -a --format '{{.ID}} {{.Names}}' 2>/dev/null", sudo=True, timeout=60)
    return parse_containers(res.stdout) if res.ok else []


def find_clone(connections, site, name: str) -> Clone | None:
    """Whether host ``name`` shares its engine ID with another active host of ``site``."""
    mine = engine_id(connections.get(name))
    others = {h.name: engine_id(connections.get(h.name)) for h in site.active_hosts if h.name != name}
    same = duplicate_of(mine, others)
    if not same:
        return None
    return Clone(name, mine, same, containers(connections.get(name)))
