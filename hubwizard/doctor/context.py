"""What the doctor's checks and fixes see: the verdict they return and the context they run in.

Data and context only: the checks (``checks``), the commands that change a host (``fixes``)
and the runner (``model``) import this module, never the other way round.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from typing import Any

from hubwizard.core.config import Host, Site
from hubwizard.core.errors import UnreachableError
from hubwizard.core.events import Phase, Sink, discard
from hubwizard.core.redact import Redactor
from hubwizard.engine.calls import RunState, StepContext
from hubwizard.remote.transport import Result

SSH_CHECK = "ssh"  # the pseudo-check reporting a host that cannot be reached


@dataclass(frozen=True)
class Diagnosis:
    """One check's verdict on one host, with the fix an admin can confirm."""

    check: str
    host: str
    ok: bool
    summary: str
    detail: str = ""
    fix_title: str | None = None
    fix_commands: tuple[str, ...] = ()
    skipped: bool = False  # cannot be checked on this host; ``summary`` says why


def tail(text: str, n: int = 8) -> str:
    """The last ``n`` lines: what a person reads of a command's output."""
    return "\n".join(text.strip().splitlines()[-n:])


@dataclass
class DoctorContext:
    """What a check sees: the site, open connections, facts, and helpers to run commands.

    ``sink`` must already redact with ``redactor`` (the runner wraps it); ``redact`` first
    learns secrets found during the run (a join token), so both mask them from then on."""

    session: Any  # hubwizard.session.Session
    connections: Any  # hubwizard.remote.connections.Connections
    sink: Sink = discard
    redactor: Redactor = field(default_factory=Redactor)
    unreachable: dict[str, str] = field(default_factory=dict)  # host name -> why
    _facts: Any = None
    _engine: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def site(self) -> Site:
        return self.session.site

    @property
    def facts(self) -> Any:
        """The engine's facts (internal IPs, subnet), probed once per doctor run."""
        with self._lock:
            if self._facts is None:
                from hubwizard.engine import facts

                # facts of the reachable hosts only: one dead node must not hide the others' diagnoses
                alive = [h for h in self.site.hosts if h.name not in self.unreachable]
                site = self.site if len(alive) == len(self.site.hosts) else self.site.model_copy(update={"hosts": alive})
                self._facts = facts.gather(site, self.connections)
            return self._facts

    def engine(self) -> Any:
        """The session's recipe engine over the doctor's own connections and facts (to show or
        re-run a step as a fix), made once per context."""
        facts = self.facts
        with self._lock:
            if self._engine is None:
                self._engine = self.session.engine(self.sink, connections=self.connections, facts=facts)
            return self._engine

    def redact(self, text: str) -> str:
        for value in self.session.secrets.all_values():
            self.redactor.add(value)
        return self.redactor(text)

    def redacted(self, d: Diagnosis) -> Diagnosis:
        """The diagnosis with no secret in any of its texts (it is printed, shown and emitted)."""
        changes: dict[str, Any] = {f.name: self.redact(getattr(d, f.name)) for f in fields(d)
                                   if isinstance(getattr(d, f.name), str)}
        changes["fix_commands"] = tuple(self.redact(c) for c in d.fix_commands)
        return replace(d, **changes)

    def ip(self, host: Host) -> str:
        return self.facts.ips.get(host.name, host.internal_address or host.address)

    def reachable(self, hosts: Iterable[Host]) -> list[Host]:
        return [h for h in hosts if h.name not in self.unreachable]

    def run(self, host: Host | str, command: str, *, sudo: bool = True, timeout: float = 60,
            stdin: str | None = None) -> Result:
        """Run a read-only probe on a host (output is not streamed: the diagnosis carries it).
        A command that changes a host goes through ``doctor.fixes`` instead."""
        name = host if isinstance(host, str) else host.name
        return self.connections.get(name).run(command, sudo=sudo, timeout=timeout, stdin=stdin)

    def step_context(self, host: Host | str, step: str, phase: Phase = "apply") -> StepContext:
        """An engine StepContext for ``host``: its ``run`` holds the host lock in the apply phase
        and streams redacted output events, exactly as a recipe's call does."""
        h = self.site.host(host) if isinstance(host, str) else host
        return StepContext(step, h, self.connections.get(h.name), self.site, self.facts, self.session.secrets,
                           RunState(), self.sink, self.connections, {}, phase)

    def each(self, hosts: Iterable[Host], fn: Callable[[Host], list[Diagnosis] | Diagnosis]) -> list[Diagnosis]:
        """Run ``fn`` per reachable host in parallel; an exception becomes a failed diagnosis."""
        targets = self.reachable(hosts)
        if not targets:
            return []

        def one(host: Host) -> list[Diagnosis]:
            try:
                out = fn(host)
            except UnreachableError as exc:
                self.unreachable[host.name] = exc.message
                return []
            return out if isinstance(out, list) else [out]

        with ThreadPoolExecutor(max_workers=len(targets)) as pool:
            return [d for ds in pool.map(one, targets) for d in ds]
