"""Named Python probes and actions that recipes call (``call: name``).

A recipe stays data; where a step needs structured results (swarm state, join tokens,
node lists) it names a function registered here. Each gets a StepContext and returns
a CallResult. Modules defining calls register them on import (see ``load_all``).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hubwizard import hostlock
from hubwizard.config import Host, Site
from hubwizard.events import OutputLine, Progress, Sink
from hubwizard.secrets import Secrets
from hubwizard.transport import Result, Transport


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
    facts: Any  # hubwizard.render.Facts
    secrets: Secrets
    state: RunState
    emit: Sink
    connections: Any = None  # hubwizard.connections.Connections, to reach another host
    template_context: dict[str, Any] = field(default_factory=dict)
    phase: str = ""  # apply: commands hold the host lock (hubwizard.hostlock), as the recipes' own do

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
_MODULES = (
    "hubwizard.probes",
    "hubwizard.swarm_actions",
    "hubwizard.hub_image",
    "hubwizard.hub_service",
    "hubwizard.hub_web",
    "hubwizard.hub_e2e",
    "hubwizard.classic_actions",
    "hubwizard.doctor_checks",
)


def register(name: str) -> Callable[[Call], Call]:
    """Decorator: make ``fn`` callable from recipes as ``call: name``."""

    def wrap(fn: Call) -> Call:
        _REGISTRY[name] = fn
        return fn

    return wrap


def load_all() -> None:
    """Import every module that registers calls (missing optional ones are fine)."""
    for mod in _MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def get(name: str) -> Call:
    if name not in _REGISTRY:
        load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no probe/action named {name!r} (known: {', '.join(sorted(_REGISTRY))})") from None


def names() -> list[str]:
    load_all()
    return sorted(_REGISTRY)
