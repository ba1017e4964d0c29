"""The doctor: troubleshooting checks that say what is wrong, on which host, and how to fix it.

Why a separate engine from recipes: a recipe step converges one piece of the install; the
doctor looks at the running cluster from the symptoms admins meet ("No elected primary
cluster manager", a node Down, tasks failing with "No such image", a full disk) and maps each
to a diagnosis and a fix whose exact commands are shown before anything runs. The checks live
in ``checks``, what they see in ``context``, the road a fix takes to a host in ``fixes``; this
module runs them (hosts in parallel), applies a confirmed fix and re-runs the check, and is the
``hubwizard doctor`` command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from typing import Any

from hubwizard.core.config import Host, Site
from hubwizard.core.errors import HubwizardError, UnreachableError
from hubwizard.core.events import CheckResult, Sink, discard
from hubwizard.core.redact import Redactor
from hubwizard.doctor import checks as doctor_checks
from hubwizard.doctor import fixes
from hubwizard.doctor.checks import Check
from hubwizard.doctor.context import SSH_CHECK, Diagnosis, DoctorContext
from hubwizard.engine.runner import redacting

__all__ = ["SSH_CHECK", "Diagnosis", "DoctorContext", "apply_fix", "exit_code", "fixable", "format_diagnosis",
           "main", "run_doctor"]


def _context(session: Any, connections: Any, sink: Sink | None) -> DoctorContext:
    """A context whose sink masks every secret of the session, and those learnt later."""
    redactor = Redactor(session.secrets.all_values())
    return DoctorContext(session, connections, redacting(sink or discard, redactor), redactor)


# ------------------------------------------------------------------------ runner


def _connect_all(ctx: DoctorContext) -> list[Diagnosis]:
    """Open every active host's connection in parallel; the unreachable ones become diagnoses."""
    hosts = ctx.site.active_hosts + [h for h in ctx.site.hosts if h.spare]

    def one(host: Host) -> Diagnosis:
        try:
            ctx.connections.get(host.name)
            return Diagnosis(SSH_CHECK, host.name, True, "reachable over SSH")
        except UnreachableError as exc:
            ctx.unreachable[host.name] = exc.message
            return Diagnosis(SSH_CHECK, host.name, False, "cannot reach this host over SSH", exc.message,
                             fix_title=exc.fix or "check the host is up and sshd answers")

    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        return list(pool.map(one, hosts))


def _emit(ctx: DoctorContext, d: Diagnosis) -> Diagnosis:
    """Report a verdict (redacted) and return it as reported."""
    d = ctx.redacted(d)
    ctx.sink(CheckResult(f"doctor:{d.check}", d.host, d.summary, d.ok, d.detail, d.skipped))
    return d


def _checks_for(site: Site, only: set[str] | None = None) -> list[Check]:
    return [c for c in doctor_checks.CHECKS
            if site.site.track in c.tracks and c.applies(site) and (only is None or c.name in only)]


def _run_check(ctx: DoctorContext, check: Check) -> list[Diagnosis]:
    try:
        return check.run(ctx)
    except UnreachableError as exc:
        return [Diagnosis(check.name, ctx.site.hub_host.name, False, "a host stopped answering", exc.message)]
    except HubwizardError as exc:
        return [Diagnosis(check.name, ctx.site.hub_host.name, False, f"check failed: {exc.message}", str(exc))]
    except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others' verdicts
        return [Diagnosis(check.name, ctx.site.hub_host.name, False, "the check itself failed (a bug in hubwizard)",
                          f"{type(exc).__name__}: {exc}")]


def run_doctor(session: Any, connections: Any, sink: Sink | None = None,
               only: set[str] | None = None) -> list[Diagnosis]:
    """Every check that applies to the site's track; reachability first, then the checks
    (each check spreads over its hosts in parallel). Diagnoses come back in check order."""
    ctx = _context(session, connections, sink)
    out = [_emit(ctx, d) for d in _connect_all(ctx) if not d.ok or only is None]
    if ctx.site.hub_host.name in ctx.unreachable:
        return out
    for check in _checks_for(ctx.site, only):
        out += [_emit(ctx, d) for d in _run_check(ctx, check)]
    return out


def apply_fix(session: Any, connections: Any, diagnosis: Diagnosis, sink: Sink | None = None) -> Diagnosis:
    """Run the fix of a failed diagnosis, then re-run that check and return its new verdict
    for the same host (a failed fix command comes back as a failed diagnosis naming it)."""
    if not fixable(diagnosis):
        return replace(diagnosis, summary=f"no automatic fix: {diagnosis.fix_title or diagnosis.summary}")
    check = doctor_checks.by_name(diagnosis.check)
    ctx = _context(session, connections, sink)
    failure = (check.fix or fixes.run_fix_commands)(ctx, diagnosis)
    if failure is not None:
        return _emit(ctx, Diagnosis(diagnosis.check, diagnosis.host, False, f"the fix failed: {failure}",
                                    diagnosis.detail, diagnosis.fix_title, diagnosis.fix_commands))
    deadline = time.monotonic() + check.settle
    while True:  # a restarted daemon or container needs a moment: re-check until it passes or settle ends
        result = _recheck(ctx, check, diagnosis)
        if result.ok or result.skipped or time.monotonic() >= deadline:
            break
        time.sleep(2)
    return _emit(ctx, result)


def _recheck(ctx: DoctorContext, check: Check, diagnosis: Diagnosis) -> Diagnosis:
    again = check.recheck(ctx, diagnosis) if check.recheck else _run_check(ctx, check)
    mine = [d for d in again if d.host == diagnosis.host] or again
    return next((d for d in mine if not d.ok and not d.skipped), None) or (
        mine[0] if mine else Diagnosis(diagnosis.check, diagnosis.host, True, "no longer reported"))


# ------------------------------------------------------------------------ CLI


def exit_code(diagnoses: list[Diagnosis]) -> int:
    """0 all pass, 3 a host is unreachable, 1 any other failure."""
    if any(d.check == SSH_CHECK and not d.ok for d in diagnoses):
        return 3
    return 1 if any(not d.ok and not d.skipped for d in diagnoses) else 0


def format_diagnosis(d: Diagnosis) -> str:
    """What a person reads: verdict, host, check, diagnosis, and the fix with its exact commands."""
    mark = "skip" if d.skipped else ("pass" if d.ok else "FAIL")
    lines = [f"[{mark}] {d.check:<16} {d.host:<10} {d.summary}"]
    if not d.ok or d.skipped:
        lines += [f"        {line}" for line in d.detail.strip().splitlines()[-8:]]
    if not d.ok and not d.skipped and d.fix_title:
        lines.append(f"        fix: {d.fix_title}")
        lines += [f"          $ {c}" for c in d.fix_commands]
    return "\n".join(lines)


def fixable(d: Diagnosis) -> bool:
    """A fix hubwizard can run: commands to run, or a fixer of its check."""
    try:
        return bool(d.fix_commands) or doctor_checks.by_name(d.check).fix is not None
    except KeyError:
        return False


def _ask(d: Diagnosis) -> bool:
    answer = input(f"Apply the fix for {d.check} on {d.host}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def main(session: Any, args: argparse.Namespace) -> int:
    """`hubwizard doctor -c SITE [--fix] [--yes] [--json]`."""
    from hubwizard.remote.connections import Connections

    fix, yes, as_json = getattr(args, "fix", False), getattr(args, "yes", False), getattr(args, "json", False)
    if fix and not yes and (as_json or not sys.stdin.isatty()):
        from hubwizard.core.errors import UsageError

        raise UsageError("doctor --fix asks before each fix: run it in a terminal, or add --yes to apply them all")
    conns = Connections(session.site, session.secrets,
                        accept_new_host_keys=getattr(args, "accept_new_host_keys", False))
    try:
        diagnoses = run_doctor(session, conns)
        if not as_json:
            for d in diagnoses:
                print(format_diagnosis(d), flush=True)
        applied: list[dict[str, Any]] = []
        if fix:
            diagnoses, applied = _fix_all(session, conns, diagnoses, yes, as_json)
    finally:
        conns.close()
    code = exit_code(diagnoses)
    if as_json:
        print(json.dumps({"command": "doctor", "site": session.site.site.name, "exit_code": code,
                          "diagnoses": [asdict(d) for d in diagnoses], "fixes": applied}, indent=2))
    else:
        failed = sum(1 for d in diagnoses if not d.ok and not d.skipped)
        skipped = sum(1 for d in diagnoses if d.skipped)
        print(f"\ndoctor: {len(diagnoses) - failed - skipped} passed, {failed} failed, {skipped} cannot run here")
    return code


def _fix_all(session: Any, conns: Any, diagnoses: list[Diagnosis], yes: bool,
             quiet: bool) -> tuple[list[Diagnosis], list[dict[str, Any]]]:
    """Offer each failed check's fix (ask unless --yes); return the updated diagnoses."""
    out, applied = [], []
    for d in diagnoses:
        if d.ok or d.skipped or d.check == SSH_CHECK or not fixable(d):
            out.append(d)
            continue
        if not quiet:
            print(f"\n{d.check} on {d.host}: {d.fix_title}")
            for c in d.fix_commands:
                print(f"  $ {c}")
        if not yes and not _ask(d):
            out.append(d)
            continue
        new = apply_fix(session, conns, d)
        applied.append({"check": d.check, "host": d.host, "fixed": new.ok, "after": asdict(new)})
        if not quiet:
            print(format_diagnosis(new), flush=True)
        out.append(new)
    return out, applied
