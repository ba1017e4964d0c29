"""The systemd unit every firewall guard installs (NFS, Swarm's ports, the classic track's Consul).

Why one shape: each guard makes its own chains, flushes and fills them, then hooks them first
into their parent chains (DOCKER-USER for containers, INPUT/OUTPUT for the host), and must come
back whenever Docker starts (Docker rebuilds its chains then). Written once here, the guards
differ only in their rules and their words.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hubwizard.engine.calls import StepContext
from hubwizard.remote.transport import Result

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


# --------------------------------------------------------------------------- the shared flow
# Each guard reads a host's state the same way (its unit file, enabled or not, the rules
# `iptables -C` cannot find), installs the same way (write, enable, restart, re-read) and
# words its failures the same way; only its rules, unit text and words differ.


@dataclass(frozen=True)
class Guard:
    """What a guard's messages need: its unit, its name, its step, what a missing rule exposes."""

    unit: str  # hubwizard-nfs-guard.service
    unit_path: str  # /etc/systemd/system/...
    title: str  # "NFS guard"
    step: str  # the recipe step that installs it (the fix: apply --only STEP)
    exposed: str  # what a missing rule means for users, e.g. "containers can reach the NFS server"


@dataclass
class Target:
    """One host's guard: how to run there as root and write the unit, what the unit must say,
    whether it does, and which rules its firewall lacks."""

    name: str
    run: Callable[[str], Result]
    put: Callable[[bytes], Any]
    want: str = ""
    unit_ok: bool = False
    missing: list[str] = field(default_factory=list)
    what: str = ""  # what the guard does there, as the success message says it


def target(ctx: StepContext, name: str, unit_path: str) -> Target:
    """``name``'s guard: this host through the step's own run (the host lock in apply), another
    through the engine's connection to it."""
    if name == ctx.host.name:
        return Target(name, lambda cmd: ctx.run(cmd, sudo=True),
                      lambda data: ctx.transport.put(data, unit_path, mode=0o644, sudo=True))
    conn = ctx.reach(name)
    return Target(name, lambda cmd: conn.run(cmd, sudo=True),
                  lambda data: conn.put(data, unit_path, mode=0o644, sudo=True))


def missing_rules(run: Callable[[str], Result], rules: Iterable[str], ip6_rules: Iterable[str] = ()) -> list[str]:
    """The rules (iptables -A arguments) and IPv6 rules ("(ip6tables) RULE") not in the firewall now."""
    script = "; ".join(f"iptables -w -C {rule} 2>/dev/null || echo {shlex.quote(rule)}" for rule in rules)
    v6 = "; ".join(f"ip6tables -w -C {rule} 2>/dev/null || echo {shlex.quote('(ip6tables) ' + rule)}"
                   for rule in ip6_rules)
    if v6:
        script += f"; if ip6tables -w -L INPUT -n >/dev/null 2>&1; then {v6}; fi"
    return [line for line in run(script).stdout.splitlines() if line.strip()]


def read(guard: Guard, t: Target, want: str, rules: Iterable[str], ip6_rules: Iterable[str] = ()) -> Target:
    """Fill ``t``: the unit it must hold, whether it holds it enabled, the rules it lacks."""
    t.want = want
    have = t.run(f"cat {guard.unit_path} 2>/dev/null").stdout
    t.unit_ok = have == want and t.run(f"systemctl is-enabled --quiet {guard.unit}").ok
    t.missing = missing_rules(t.run, rules, ip6_rules)
    return t


def install(guard: Guard, t: Target) -> str:
    """Write, enable and (re)start the unit on ``t``; an error line, or "" when it ran."""
    t.put(t.want.encode())
    res = t.run(f"systemctl daemon-reload && systemctl enable {guard.unit} >/dev/null 2>&1 && "
                f"systemctl restart {guard.unit}")
    if res.ok:
        return ""
    return f"{t.name}: cannot start {guard.unit}: {res.output[-500:]}\nsee: journalctl -u {guard.unit} -n 30"


def check_failure(guard: Guard, t: Target, prefix: str = "") -> str | None:
    """Check (read-only): why ``t``'s guard is not as wanted, or None."""
    if not t.unit_ok:
        return f"{prefix}{guard.unit_path} is missing, differs or is not enabled"
    if t.missing:
        return f"{prefix}{len(t.missing)} rule(s) of the {guard.title} missing, e.g. iptables -A {t.missing[0]}"
    return None


def installed_failure(guard: Guard, t: Target) -> str | None:
    """After an install: the rules the unit should have made and did not, or None."""
    if t.missing:
        return f"{t.name}: {guard.unit} ran but {len(t.missing)} rule(s) are missing, e.g. iptables -A {t.missing[0]}"
    return None


def verify_failure(guard: Guard, t: Target) -> str | None:
    """Verify: what is exposed and the fix, or None when every rule is there and the unit enabled."""
    if t.missing:
        return (f"{t.name}: {guard.exposed}: {len(t.missing)} rule(s) missing, e.g. iptables -A {t.missing[0]}; "
                f"run `hubwizard apply --only {guard.step}`")
    if not t.unit_ok:
        return (f"{t.name}: the rules are in place but {guard.unit} is missing, differs or is not enabled: "
                "they would be lost when Docker restarts; run apply")
    return None


def converge(guard: Guard, t: Target, reread: Callable[[Target], Target]) -> tuple[str | None, bool]:
    """Apply on one target read already: install when needed, then re-read. (error, changed)."""
    if t.unit_ok and not t.missing:
        return None, False
    error = install(guard, t)
    if error:
        return error, True
    return installed_failure(guard, reread(t)), True
