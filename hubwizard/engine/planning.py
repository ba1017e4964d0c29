"""plan's decisions, apart from the hosts: what to report for a step on a host, given its
check's outcome and what the earlier steps of the same plan would change.

Why its own module: on machines that are still bare, a later step's check cannot pass (or even
run: there is no Docker API to ask yet) because an earlier step has not installed what it
looks at. That is not a failure, it is the order of the plan: "would change (needs step docker
first)". The engine runs the checks; this pure logic decides, so it is tested with fake
outcomes and holds for every recipe, not for a hand-picked few.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["unchanged", "would-change", "needs", "failed", "unreachable", "skipped"]


@dataclass(frozen=True)
class CheckOutcome:
    """What the engine learnt about one step on one host."""

    has_check: bool  # the step has check items (else the journal alone says if it is done)
    passed: bool = False  # every check item passed
    crashed: str = ""  # one line for people: the check raised instead of answering
    same_inputs: bool = False  # journaled done with the inputs (digest) it has now
    changed_inputs: bool = False  # journaled done, but its inputs changed since


@dataclass(frozen=True)
class Decision:
    state: State
    message: str
    needs: str = ""  # the earlier step that must run first ("needs" only)
    needs_host: str = ""  # where that step would change


class PlanBook:
    """Which steps this plan would change, on which hosts, in plan order."""

    def __init__(self) -> None:
        self._by_host: dict[str, list[str]] = {}
        self._hosts_of: dict[str, list[str]] = {}

    def add(self, step: str, host: str) -> None:
        if step not in self._by_host.setdefault(host, []):
            self._by_host[host].append(step)
            self._hosts_of.setdefault(step, []).append(host)

    def pending_on(self, host: str) -> list[str]:
        return list(self._by_host.get(host, []))

    def hosts_of(self, step: str) -> list[str]:
        return list(self._hosts_of.get(step, []))

    def blocker(self, step: str, needs: tuple[str, ...], host: str, *, generic: bool) -> tuple[str, str] | None:
        """The earlier step to name in "needs STEP first", and the host it changes on, or None.

        A declared prerequisite pending on this host comes first, then one pending elsewhere
        (the hub image for a node's pull); failing that, with ``generic``, the earliest step that
        would change this host (docker before all)."""
        for need in needs:
            if need != step and host in self.hosts_of(need):
                return need, host
        for need in needs:
            if need != step and self.hosts_of(need):
                return need, self.hosts_of(need)[0]
        if generic:
            earlier = [s for s in self.pending_on(host) if s != step]
            if earlier:
                return earlier[0], host
        return None


def decide(step: str, needs: tuple[str, ...] | None, host: str, outcome: CheckOutcome, book: PlanBook) -> Decision:
    """The plan's verdict for one step on one reachable host. ``needs`` None: the recipe does not
    say what its check looks at, so a failed check on a host where an earlier step would change
    is put down to that step; declared (even empty), only a crashed check is."""
    if outcome.has_check and outcome.passed and not outcome.changed_inputs:
        return Decision("unchanged", "already in the desired state")
    if not outcome.has_check and outcome.same_inputs:
        return Decision("unchanged", "already in the desired state")
    check_failed = outcome.has_check and not outcome.passed
    generic = bool(outcome.crashed) if needs is not None else check_failed
    blocker = book.blocker(step, needs or (), host, generic=generic)
    if blocker is not None:
        need, where = blocker
        return Decision("needs", needs_message(need, where, host), need, where)
    if outcome.crashed:
        return Decision("failed", f"could not check: {outcome.crashed}")
    if outcome.changed_inputs:
        return Decision("would-change", "inputs changed since last apply")
    return Decision("would-change", "not in the desired state")


def needs_message(need: str, where: str, host: str) -> str:
    return f"needs step {need} first" if where == host else f"needs step {need} on {where} first"


def pending(state: str, has_commands: bool) -> bool:
    """Does a step in this state go in the book? Only steps that would run commands change a
    host; a step with nothing to apply (preflight's probes) cannot be what a later one needs."""
    return has_commands and state in ("would-change", "needs")


def unreachable_message(jump: str | None, jump_down: bool) -> str:
    if jump and jump_down:
        return f"not checked: unreachable through {jump} ({jump} is unreachable)"
    return "not checked: host unreachable"


# Exception classes whose meaning is "the Docker engine on the host did not answer" (requests'
# and docker's, seen by name so the engine does not import either).
_DOCKER_SILENT = {"ConnectionError", "RemoteDisconnected", "ProtocolError", "ConnectionAbortedError",
                  "ConnectionResetError", "ConnectionRefusedError", "DockerException", "ReadTimeout",
                  "ReadTimeoutError", "ChunkedEncodingError"}


def crash_line(exc: BaseException, host: str) -> str:
    """One line for people about a check that raised: what did not answer, never a traceback."""
    names = {c.__name__ for c in type(exc).__mro__}
    if names & _DOCKER_SILENT:
        return f"the Docker engine on {host} does not answer (is dockerd installed and running?)"
    if "TimeoutError" in names:
        return f"no answer from {host} in time"
    text = " ".join(str(exc).split())
    if len(text) > 160:
        text = text[:157] + "..."
    return f"the check raised {type(exc).__name__} on {host}" + (f": {text}" if text else "")
