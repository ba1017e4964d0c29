"""Named Python probes and actions that recipes call (``call: name``).

A recipe stays data; where a step needs structured results (swarm state, join tokens,
node lists) it names a function registered here. Each gets a StepContext and returns
a CallResult. Modules defining calls register them on import; importing the
hubwizard.actions package imports them all (the session and the doctor do).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from hubwizard.core.config import Host, Site
from hubwizard.core.errors import HubwizardError
from hubwizard.core.events import OutputLine, Phase, Progress, Sink
from hubwizard.core.secrets import Secrets
from hubwizard.remote import hostlock
from hubwizard.remote.transport import Result, Transport

if TYPE_CHECKING:  # types only: the calls module loads before render and connections are needed
    from hubwizard.core.render import Facts
    from hubwizard.remote.connections import Connections


@dataclass
class CallResult:
    ok: bool
    message: str = ""
    changed: bool = False
    skipped: bool = False  # a check that cannot run here (say why in message)


@dataclass
class RunState:
    """Shared across hosts and steps of one run (e.g. the join token, node ids)."""

    data: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class StepContext:
    """What a call sees: its host, its connection, the site, facts and secrets."""

    step: str
    host: Host
    transport: Transport
    site: Site
    facts: Facts
    secrets: Secrets
    state: RunState
    emit: Sink
    connections: Connections | None = None  # to reach another host
    template_context: dict[str, Any] = field(default_factory=dict)
    phase: Phase | Literal[""] = ""  # apply: commands hold the host lock (hubwizard.remote.hostlock), as the recipes' own do

    def reach(self, host: str) -> Transport:
        """The connection to another host of the site (the engine's Connections): host keys checked,
        an unreachable host remembered."""
        if self.connections is None:
            raise HubwizardError(f"step {self.step} on {self.host.name} needs host {host}, but it runs without the "
                                 "site's connections", fix="run it through the engine (hubwizard apply/verify)")
        return self.connections.get(host)

    def run(self, command: str, *, sudo: bool = True, stdin: str | None = None, timeout: float | None = None) -> Result:
        """Run on this host, streaming output as events."""

        def line(stream: str, text: str) -> None:
            self.emit(OutputLine(self.step, self.host.name, stream, text))

        if self.phase == "apply":
            command = hostlock.locked(command, timeout or self.site.ssh.command_timeout)
        return self.transport.run(command, sudo=sudo, stdin=stdin, timeout=timeout, on_line=line)

    def progress(self, label: str, done: float, total: float | None = None) -> None:
        self.emit(Progress(self.step, self.host.name, label, done, total))


Call = Callable[..., CallResult]
_REGISTRY: dict[str, Call] = {}
def register(name: str) -> Callable[[Call], Call]:
    """Decorator: make ``fn`` callable from recipes as ``call: name``."""

    def wrap(fn: Call) -> Call:
        _REGISTRY[name] = fn
        return fn

    return wrap


def get(name: str) -> Call:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no probe/action named {name!r} (known: {', '.join(sorted(_REGISTRY))};"
                       " the calls register when hubwizard.actions is imported)") from None


def names() -> list[str]:
    return sorted(_REGISTRY)
