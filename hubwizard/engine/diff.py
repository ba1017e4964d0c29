"""plan --diff: the unified diff of every file a plan would write, against what is on the host now.

Why apart from the runner: a diff is a review aid computed after the plan, from its results,
with the engine's own rendering, connections and sudo; it reads (base64 of the file, so bytes
come back exactly) and never writes. A file that holds a secret, or that is installed private
(no permission for group or others), is never shown: "(content withheld: holds a secret)".

What a call creates (the hub's Swarm service) is diffed the same way when its module registers a
spec view for the call (``spec_view``): the call's object as it is now and as apply would make
it, one setting per line.
"""

from __future__ import annotations

import base64
import difflib
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hubwizard.core.errors import HubwizardError
from hubwizard.core.events import HostResult
from hubwizard.core.redact import Redactor
from hubwizard.core.templating import render_asset
from hubwizard.engine import planning
from hubwizard.engine.calls import StepContext

if TYPE_CHECKING:
    from hubwizard.core.steps import Item, Step
    from hubwizard.engine.runner import Engine

WITHHELD = "(content withheld: holds a secret)"


@dataclass(frozen=True)
class SpecView:
    """What a call would change, for a diff: the text now and after apply, or a note."""

    current: str = ""
    wanted: str = ""
    note: str = ""  # set when it cannot be shown (e.g. the image is not built yet)


SpecFn = Callable[[StepContext], SpecView]
_SPEC_VIEWS: dict[str, tuple[str, SpecFn]] = {}


def spec_view(call: str, label: str) -> Callable[[SpecFn], SpecFn]:
    """Decorator: ``fn(ctx) -> SpecView`` shows what call ``call`` would change (``label``), read-only."""

    def wrap(fn: SpecFn) -> SpecFn:
        _SPEC_VIEWS[call] = (label, fn)
        return fn

    return wrap


@dataclass(frozen=True)
class FileDiff:
    """One file on one host that the plan would change."""

    step: str
    host: str
    path: str
    diff: str = ""  # unified diff, current -> wanted
    withheld: str = ""  # set instead of diff when the file holds a secret
    note: str = ""  # set instead of diff when the current file could not be read


def unified(path: str, host: str, current: str, wanted: str) -> str:
    """The unified diff of a file (empty when equal); a missing file diffs against empty."""
    lines = difflib.unified_diff(current.splitlines(keepends=True), wanted.splitlines(keepends=True),
                                 fromfile=f"{host}:{path} (now)", tofile=f"{host}:{path} (after apply)")
    out = []
    for line in lines:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def holds_secret(redactor: Redactor, mode: int, *texts: str) -> bool:
    """A secret's value in either version, or a private file (nothing for group/others)."""
    return not mode & 0o077 or any(redactor(t) != t for t in texts)


def file_diff(step: str, host: str, path: str, mode: int, current: str, wanted: str,
              redactor: Redactor) -> FileDiff | None:
    """The diff to show for one file, None when it would not change."""
    if current == wanted:
        return None
    if holds_secret(redactor, mode, current, wanted):
        return FileDiff(step, host, path, withheld=WITHHELD)
    return FileDiff(step, host, path, diff=unified(path, host, current, wanted))


def read_command(path: str) -> str:
    """Read-only: the file's bytes as base64 on one line, nothing when it does not exist."""
    q = shlex.quote(path)
    return f"if [ -e {q} ]; then base64 -w0 -- {q}; fi"


def plan_diffs(engine: Engine, results: list[HostResult]) -> list[FileDiff]:
    """Every file the plan's would-change steps write, diffed per host (first writer of a path wins)."""
    steps = {s.id: s for s in engine.steps}
    seen: set[tuple[str, str]] = set()
    out: list[FileDiff] = []
    for r in results:
        step = steps.get(r.step)
        if r.status != "would-change" or step is None:
            continue
        for d in _step_diffs(engine, step, r.host, seen):
            out.append(d)
    return out


def _step_diffs(engine: Engine, step: Step, host_name: str, seen: set[tuple[str, str]]) -> list[FileDiff]:
    host = engine.site.host(host_name)
    ctx: dict[str, Any] = engine.context(host)
    if not engine._when(step.when, ctx):
        return []
    out = []
    for item in step.apply:
        if item.call in _SPEC_VIEWS and engine._when(item.when, ctx):
            d = _spec(engine, step, host, item.call or "", ctx)
            if d is not None:
                out.append(d)
            continue
        if not item.file or not engine._when(item.when, ctx):
            continue
        path = engine._path(item, ctx)
        if (host_name, path) in seen:
            continue
        seen.add((host_name, path))
        d = _one(engine, step, host_name, item, path, ctx)
        if d is not None:
            out.append(d)
    return out


def _one(engine: Engine, step: Step, host: str, item: Item, path: str, ctx: dict[str, Any]) -> FileDiff | None:
    wanted = render_asset(item.file or "", ctx)
    try:
        res = engine.conns.get(host).run(read_command(path), sudo=item.sudo, timeout=engine.site.ssh.command_timeout)
    except HubwizardError as exc:
        return FileDiff(step.id, host, path, note=f"(not read: {engine.redactor(exc.message)})")
    except Exception as exc:  # noqa: BLE001 - a connection lost mid-read: one line, the plan stands
        return FileDiff(step.id, host, path, note=f"(not read: {type(exc).__name__}: {engine.redactor(str(exc))[:160]})")
    if not res.ok:
        tail = engine.redactor(res.output.splitlines()[-1] if res.output else f"exit {res.exit_code}")
        return FileDiff(step.id, host, path, note=f"(not read: {tail})")
    try:
        current = base64.b64decode(res.stdout.strip() or b"").decode("utf-8", errors="replace")
    except ValueError:
        return FileDiff(step.id, host, path, note="(not read: the host's base64 output was not readable)")
    return file_diff(step.id, host, path, item.mode, current, wanted, engine.redactor)


def _spec(engine: Engine, step: Step, host: Any, call: str, ctx: dict[str, Any]) -> FileDiff | None:
    """The registered spec view of a call, diffed like a file (read-only: the check phase's context)."""
    label, view_of = _SPEC_VIEWS[call]
    try:
        sc = StepContext(step.id, host, engine.conns.get(host.name), engine.site, engine.facts, engine.secrets,
                         engine.state, lambda event: None, engine.conns, ctx, "check")
        view = view_of(sc)
    except HubwizardError as exc:
        return FileDiff(step.id, host.name, label, note=f"(not read: {engine.redactor(exc.message)})")
    except Exception as exc:  # noqa: BLE001 - the Docker API not answering yet, a lost connection: one line
        return FileDiff(step.id, host.name, label, note=f"(not shown: {engine.redactor(planning.crash_line(exc, host.name))})")
    if view.note:
        return FileDiff(step.id, host.name, label, note=view.note)
    return file_diff(step.id, host.name, label, 0o644, view.current, view.wanted, engine.redactor)
