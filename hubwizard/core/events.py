"""What a run tells the outside world (CLI printer, TUI, JSON): small typed messages.

The engine emits these through one callback; texts are already redacted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Phase = Literal["check", "apply", "verify"]
Mode = Literal["plan", "apply", "verify"]  # what Engine.run does: the CLI commands of the same names
Status = Literal["ok", "changed", "skipped", "failed", "unchanged", "would-change", "unreachable"]


@dataclass(frozen=True)
class StepStarted:
    step: str
    title: str
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class CommandStarted:
    step: str
    host: str
    phase: Phase
    command: str


@dataclass(frozen=True)
class OutputLine:
    step: str
    host: str
    stream: str
    line: str


@dataclass(frozen=True)
class Progress:
    """Long work: an image build, a push, a pull, nodes joining."""

    step: str
    host: str
    label: str
    done: float
    total: float | None = None


@dataclass(frozen=True)
class HostResult:
    step: str
    host: str
    status: Status
    message: str = ""
    command: str = ""
    output_tail: str = ""
    fix: str | None = None
    commands: tuple[str, ...] = field(default_factory=tuple)  # plan: what apply would run
    needs: str = ""  # plan: the earlier step that must run first (status stays "would-change")


@dataclass(frozen=True)
class CheckResult:
    """One verification check on one host (verify, doctor)."""

    step: str
    host: str
    name: str
    ok: bool
    detail: str = ""
    skipped: bool = False  # cannot check on this host (e.g. kernel lacks NFS)


@dataclass(frozen=True)
class StepFinished:
    step: str
    status: Status


@dataclass(frozen=True)
class Connecting:
    """A host is slow to answer: said once while its connection is still being opened, so the
    admin sees what is being waited for (and for how long at most) instead of a silent pause."""

    host: str
    address: str
    timeout: float


Event = StepStarted | CommandStarted | OutputLine | Progress | HostResult | CheckResult | StepFinished | Connecting
Sink = Callable[[Event], None]


def discard(_: Event) -> None:
    """A sink that drops everything (tests, quiet runs)."""
