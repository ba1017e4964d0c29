"""Named calls for the crash recipes (``call:`` items), registered like the product's own.

They do real work on the host through the step's connection, so a kill can land inside a
call as well as inside a command or a file upload."""

from __future__ import annotations

import shlex

from hubwizard.engine.calls import CallResult, StepContext, register


@register("rel_ledger")
def ledger(ctx: StepContext, name: str, entries: int = 3) -> CallResult:
    """Write ``entries`` numbered lines to WORK/HOST/NAME.part one command at a time, then move it
    into place: a kill in between leaves only the .part file, which the next apply starts over."""
    path = _path(ctx, name)
    part = shlex.quote(path + ".part")
    res = ctx.run(f"rm -f {part}")
    for i in range(entries):
        ctx.progress("ledger", i, entries)
        res = ctx.run(f"echo {i} >> {part} && sleep 0.1")
        if not res.ok:
            return CallResult(False, res.output)
    res = ctx.run(f"mv -f {part} {shlex.quote(path)}")
    with ctx.state.lock:
        ctx.state.data.setdefault("ledgers", []).append(ctx.host.name)
    return CallResult(res.ok, res.output, changed=True)


@register("rel_ledger_check")
def ledger_check(ctx: StepContext, name: str, entries: int = 3) -> CallResult:
    """The ledger is complete: exactly ``entries`` lines 0..entries-1."""
    path = _path(ctx, name)
    res = ctx.run(f"cat {shlex.quote(path)} 2>/dev/null", sudo=False)
    want = "".join(f"{i}\n" for i in range(entries))
    ok = res.ok and res.stdout == want
    return CallResult(ok, "" if ok else f"{path}: expected {entries} lines, found {res.stdout!r}")


def _path(ctx: StepContext, name: str) -> str:
    """Call args are not templated: the call builds its path from the site, as product calls do."""
    return f"{ctx.site.storage.path}/{ctx.host.name}/{name}"
