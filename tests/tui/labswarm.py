"""A lab swarm for the monitor's pty test and benchmark: `lab up --name tui --with-docker`,
then swarm init on the hub and join of the nodes over the engine's own SSH connections.

Brings the lab up only if it is not up already, and says so, so the caller tears down only
what it started."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

LAB = "tui"


def ensure_lab(site: Path, name: str = LAB) -> bool:
    """Up (or reuse) the lab; True if this call started it. Skips the test when no engine answers."""
    import pytest

    from hubwizard import lab

    try:
        was_up = bool(lab.status(name).get("up"))
    except lab.NoEngineError as exc:
        pytest.skip(f"no Docker engine: {exc.message}")
    lab.up(lab.LabSpec(name=name, nodes=2, with_docker=True), site, progress=lambda _m: None)
    return not was_up


def ensure_swarm(site: Path) -> list[str]:
    """Swarm init on the hub, join every node (idempotent); return the hostnames in the swarm."""
    from hubwizard.config import load_site
    from hubwizard.connections import Connections
    from hubwizard.secrets import load_secrets

    s = load_site(site)
    with Connections(s, load_secrets(site)) as conns:
        hub = conns.get(s.hub_host.name)
        state = hub.run("docker info --format '{{.Swarm.LocalNodeState}}'").stdout.strip()
        if state != "active":
            res = hub.run(f"docker swarm init --advertise-addr {shlex.quote(s.hub_host.address)}")
            assert res.ok, res.output
        token = hub.run("docker swarm join-token -q worker").stdout.strip()
        for node in s.nodes:
            t = conns.get(node.name)
            if t.run("docker info --format '{{.Swarm.LocalNodeState}}'").stdout.strip() != "active":
                res = t.run(f"docker swarm join --token {shlex.quote(token)} {shlex.quote(s.hub_host.address)}:2377")
                assert res.ok, res.output
        return hub.run("docker node ls --format '{{.Hostname}}'").stdout.split()


IMAGE = "hwbench/busybox:1"
BUILD_IMAGE = (  # busybox-static from Debian, in a FROM-scratch image built on the machine itself
    "command -v busybox >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
    "busybox-static >/dev/null); docker image inspect " + IMAGE + " >/dev/null 2>&1 || (mkdir -p /tmp/hwbench && "
    "cp \"$(command -v busybox)\" /tmp/hwbench/busybox && printf 'FROM scratch\\nCOPY busybox /bin/busybox\\n"
    "ENTRYPOINT [\"/bin/busybox\"]\\n' > /tmp/hwbench/Dockerfile && docker build -q -t " + IMAGE + " /tmp/hwbench)"
)


def ensure_image(conns: Any, site: Any) -> None:
    """The tiny image on every machine (nothing pulled from Docker Hub)."""
    for host in site.active_hosts:
        res = conns.get(host.name).run(BUILD_IMAGE, sudo=True, timeout=600)
        assert res.ok, f"{host.name}: cannot build {IMAGE}: {res.output[-500:]}"


def down(name: str = LAB) -> Any:
    from hubwizard import lab

    return lab.down(name, progress=lambda _m: None)
