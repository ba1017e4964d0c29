"""Printing a run for people (a line per event, colour when on a terminal) or as one JSON
document. The CLI's only output code; the TUI renders the same events its own way."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import TextIO

from hubwizard.core.events import (
    CheckResult,
    CommandStarted,
    Connecting,
    Event,
    HostResult,
    OutputLine,
    Progress,
    StepFinished,
    StepStarted,
)

_MARK = {
    "ok": "ok",
    "changed": "changed",
    "unchanged": "unchanged",
    "skipped": "skipped",
    "failed": "FAILED",
    "unreachable": "UNREACHABLE",
    "would-change": "would change",
}
_COLOUR = {"failed": "31", "unreachable": "31", "changed": "33", "would-change": "33", "ok": "32", "unchanged": "32"}


class HumanPrinter:
    """Streams events as readable lines; output lines only with ``verbose``."""

    def __init__(self, out: TextIO = sys.stdout, *, verbose: bool = False, show_commands: bool = True) -> None:
        self.out, self.verbose, self.show_commands = out, verbose, show_commands
        self.tty = out.isatty()
        self._explained: set[str] = set()  # why a host is unreachable, with its fix: printed once

    def _c(self, status: str, text: str) -> str:
        code = _COLOUR.get(status)
        return f"\033[{code}m{text}\033[0m" if self.tty and code else text

    def __call__(self, event: Event) -> None:
        w = self.out.write
        if isinstance(event, Connecting):  # stderr: a notice while waiting, not part of the report
            print(f"connecting to {event.host} ({event.address}, {event.timeout:g} s)…", file=sys.stderr, flush=True)
        elif isinstance(event, StepStarted):
            w(f"\n== {event.step}: {event.title}  [{', '.join(event.hosts)}]\n")
        elif isinstance(event, CommandStarted) and self.show_commands and event.phase == "apply":
            w(f"   {event.host}$ {event.command}\n")
        elif isinstance(event, OutputLine) and self.verbose:
            w(f"   {event.host}| {event.line}\n")
        elif isinstance(event, Progress):
            total = f"/{event.total:g}" if event.total else ""
            w(f"   {event.host}  {event.label} {event.done:g}{total}\n")
        elif isinstance(event, CheckResult):
            mark = "skip" if event.skipped else ("pass" if event.ok else "FAIL")
            colour = "ok" if event.ok or event.skipped else "failed"
            detail = f"  ({event.detail.splitlines()[-1]})" if event.detail and (not event.ok or event.skipped) else ""
            w(f"   {self._c(colour, mark):>6}  {event.host:<10} {event.name}{detail}\n")
        elif isinstance(event, HostResult):
            self._host(event)
        elif isinstance(event, StepFinished):
            pass
        self.out.flush()

    def _host(self, r: HostResult) -> None:
        w = self.out.write
        msg = f" ({r.message})" if r.needs else f" - {r.message}" if r.message else ""
        w(f"   {self._c(r.status, _MARK.get(r.status, r.status)):>12}  {r.host}{msg}\n")
        for cmd in r.commands:
            w(f"        $ {cmd}\n")
        if r.status == "unreachable":  # a plan lists every step of a host that is down: why and the fix once
            why = f"{r.output_tail}\n{r.fix}"
            if why in self._explained:
                return
            self._explained.add(why)
        if r.status in ("failed", "unreachable"):
            if r.command:
                w(f"        command: {r.command}\n")
            for line in r.output_tail.splitlines():
                w(f"        | {line}\n")
            if r.fix:
                w(f"        fix: {r.fix}\n")


class JsonCollector:
    """Collects events; ``document()`` gives the single JSON document --json prints."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        if not isinstance(event, OutputLine | CommandStarted | Progress):
            self.events.append(event)

    def document(self, command: str, exit_code: int, *, diffs: list | None = None) -> str:
        steps: dict[str, dict] = {}
        checks = []
        for e in self.events:
            if isinstance(e, StepStarted):
                steps[e.step] = {"id": e.step, "title": e.title, "hosts": {}}
            elif isinstance(e, HostResult):
                entry = dataclasses.asdict(e)
                entry["commands"] = list(e.commands)
                entry["state"] = state_of(e)
                steps.setdefault(e.step, {"id": e.step, "hosts": {}})["hosts"][e.host] = entry
            elif isinstance(e, CheckResult):
                checks.append(dataclasses.asdict(e))
            elif isinstance(e, StepFinished) and e.step in steps:
                steps[e.step]["status"] = e.status
        doc = {"command": command, "exit_code": exit_code, "steps": list(steps.values())}
        if checks:
            doc["checks"] = checks
        if diffs is not None:
            doc["diffs"] = [dataclasses.asdict(d) for d in diffs]
        return json.dumps(doc, indent=2)


def state_of(r: HostResult) -> str:
    """A plan's state of one step on one host: would-change, needs (an earlier step first),
    unreachable (not checked), unchanged, skipped or failed."""
    return "needs" if r.needs else r.status


def plan_summary(results: list[HostResult]) -> str:
    """The last lines of a plan for people: counts per state, and what exit 3 means."""
    from collections import Counter

    counts = Counter(state_of(r) for r in results)
    words = {"would-change": "would change", "needs": "would change after an earlier step",
             "unreachable": "not checked (host unreachable)"}
    order = ("would-change", "needs", "unchanged", "skipped", "failed", "unreachable")
    parts = [f"{counts[s]} {words.get(s, s)}" for s in order if counts[s]]
    text = "\nplan: " + (", ".join(parts) if parts else "nothing to do")
    down = sorted({r.host for r in results if r.status == "unreachable"})
    if down:
        text += (f"\nplan: {', '.join(down)} could not be reached; their steps above are listed with their "
                 "commands but were not checked (fix the connection, then run plan again)")
    return text


def diff_text(diffs: list, *, color: bool = False) -> str:
    """plan --diff for people: per host and file, the unified diff (or why it is not shown)."""
    if not diffs:
        return "\ndiff: no file would change"
    out = []
    for d in diffs:
        out.append(f"\n== diff {d.host}: {d.path}  (step {d.step})")
        if d.withheld or d.note:
            out.append(f"    {d.withheld or d.note}")
            continue
        for line in d.diff.splitlines():
            code = "32" if line.startswith("+") else "31" if line.startswith("-") else "36" if line.startswith("@@") else ""
            out.append(f"\033[{code}m{line}\033[0m" if color and code else line)
    return "\n".join(out)
