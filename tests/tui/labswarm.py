"""A tiny image on every machine of a lab swarm, for the monitor's lab test and benchmark: busybox
from Debian in a FROM-scratch image built on each machine (nothing is pulled from Docker Hub)."""

from __future__ import annotations

from typing import Any

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
