"""The one road from a doctor fix to a host: what the engine's own steps take.

Why: a fix changes a host like an `apply` does, so it must hold the same host lock (a fix
must not race a running or killed apply: hubwizard.remote.hostlock), stream the same events
(CommandStarted, OutputLine) through the redacting sink, and keep secrets off command lines
(a join goes through the recipe's Docker API call, never `docker swarm join --token ...`).
Shell commands go through the engine's StepContext.run, Python calls through the call
registry, whole steps through the session's Engine (journaled, checked, verified).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hubwizard.core.config import Host
from hubwizard.core.events import CommandStarted
from hubwizard.doctor.context import Diagnosis, DoctorContext, tail
from hubwizard.engine import calls

FIX_TIMEOUT = 600.0  # seconds per fix command (an image prune or a dockerd restart can be slow)


def label(d: Diagnosis) -> str:
    """The step name a fix's events carry: ``doctor:CHECK``."""
    return f"doctor:{d.check}"


def run_commands(ctx: DoctorContext, host: str, commands: Iterable[str], step: str) -> str | None:
    """Run ``commands`` in order as root on ``host``, each under the host lock, each announced
    and its output streamed (redacted); stop at the first failure and say which, where and why."""
    sc = ctx.step_context(host, step, "apply")
    for command in commands:
        ctx.sink(CommandStarted(step, host, "apply", command))
        res = sc.run(command, sudo=True, timeout=FIX_TIMEOUT)
        if not res.ok:
            return ctx.redact(f"`{command}` exited {res.exit_code} on {host}: {tail(res.output, 5)}")
    return None


def run_fix_commands(ctx: DoctorContext, d: Diagnosis, host: str | None = None) -> str | None:
    """The default fix: the diagnosis' own commands, on its host (or ``host``)."""
    return run_commands(ctx, host or d.host, d.fix_commands, label(d))


def call(ctx: DoctorContext, host: str, name: str, step: str, **args: Any) -> str | None:
    """A recipe's registered Python call (``call: name``) as a fix on ``host``; None when it worked."""
    ctx.sink(CommandStarted(step, host, "apply", f"{name}()"))
    res = calls.get(name)(ctx.step_context(host, step, "apply"), **args)
    return None if res.ok else ctx.redact(f"{name} on {host}: {res.message}")


def apply_step(ctx: DoctorContext, step_id: str, host: str) -> str | None:
    """Re-run one recipe step on one host through the session's engine (check, apply, verify,
    journal, host lock); None when it converged."""
    summary = ctx.engine().run("apply", only=step_id, hosts={host})
    bad = [r for r in summary.results if r.status in ("failed", "unreachable")]
    return None if not bad else ctx.redact(f"step {step_id} failed on {host}: {bad[0].message} {bad[0].output_tail}")


def step_commands(ctx: DoctorContext, step_id: str, host: Host) -> tuple[str, ...]:
    """The apply commands of a recipe step on ``host``, as the plan shows them."""
    eng = ctx.engine()
    step = next((s for s in eng.steps if s.id == step_id), None)
    if step is None:
        return ()
    return tuple(text for _, text in eng.rendered(step, eng.context(host)))
