"""What the inventory shows of a host before anything is installed: can we log in, is sudo
usable, which OS, is Docker there, how many CPUs, how much memory and disk.

Read-only, one command per probe over the connection the engine would use; shared by the
wizard's inventory screen and anything headless that wants the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hubwizard.core.errors import HubwizardError

# One round trip: each line is KEY=VALUE so a missing tool leaves just its line empty.
_SCRIPT = r"""
. /etc/os-release 2>/dev/null; echo "os=${PRETTY_NAME:-unknown}"
echo "cpus=$(nproc 2>/dev/null)"
echo "mem=$(awk '/^MemTotal:/ {print $2 * 1024}' /proc/meminfo 2>/dev/null)"
echo "disk=$(df -P -B1 / 2>/dev/null | awk 'NR==2 {print $4}')"
echo "docker=$(docker version --format '{{.Server.Version}}' 2>/dev/null || (command -v docker >/dev/null && echo 'client only'))"
"""


@dataclass(frozen=True)
class HostReport:
    host: str
    reachable: bool
    sudo: bool = False
    os: str = ""
    docker: str = ""
    cpus: int = 0
    memory: int = 0  # bytes
    disk_free: int = 0  # bytes free on /
    error: str = ""
    fix: str = ""

    def cells(self) -> tuple[str, ...]:
        from hubwizard.core.units import human_bytes

        if not self.reachable:
            return ("no", "", "", "", "", "", "")
        return ("yes", "yes" if self.sudo else "NO", self.os, self.docker or "missing", str(self.cpus),
                human_bytes(self.memory), human_bytes(self.disk_free))


def parse_probe(host: str, text: str, sudo_ok: bool) -> HostReport:
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def num(key: str) -> int:
        try:
            return int(float(values.get(key) or 0))
        except ValueError:
            return 0

    return HostReport(host, True, sudo_ok, values.get("os", ""), values.get("docker", ""), num("cpus"), num("mem"),
                      num("disk"))


def probe(connections: Any, name: str) -> HostReport:
    """Connect (host-key policy applies) and read the host; failures become a report."""
    try:
        t = connections.get(name)
        sudo_ok = t.run("true", sudo=True, timeout=20).ok
        res = t.run(_SCRIPT, sudo=sudo_ok, timeout=30)
    except HubwizardError as exc:
        return HostReport(name, False, error=exc.message, fix=exc.fix or "")
    return parse_probe(name, res.stdout, sudo_ok)
