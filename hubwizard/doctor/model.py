"""The doctor: troubleshooting checks that say what is wrong, on which host, and how to fix it.

Why a separate engine from recipes: a recipe step converges one piece of the install; the
doctor looks at the running cluster from the symptoms admins meet ("No elected primary
cluster manager", a node Down, tasks failing with "No such image", a full disk) and maps each
to a diagnosis and a fix whose exact commands are shown before anything runs. The checks live
in ``doctor_checks``; this module runs them (hosts in parallel), applies a confirmed fix and
re-runs the check, and is the ``hubwizard doctor`` command.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from hubwizard.core.config import Host, Site
from hubwizard.core.errors import HubwizardError, UnreachableError
from hubwizard.core.events import CheckResult, CommandStarted, OutputLine, Sink, discard
from hubwizard.core.redact import Redactor
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


@dataclass
class DoctorContext:
    """What a check sees: the site, open connections, facts, and helpers to run commands."""

    session: Any  # hubwizard.session.Session
    connections: Any  # hubwizard.remote.connections.Connections
    sink: Sink = discard
    unreachable: dict[str, str] = field(default_factory=dict)  # host name -> why
    _facts: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def site(self) -> Site:
        return self.session.site

    @property
    def facts(self):
        """The engine's facts (internal IPs, subnet), probed once per doctor run."""
        with self._lock:
            if self._facts is None:
                from hubwizard.engine import facts

                # facts of the reachable hosts only: one dead node must not hide the others' diagnoses
                alive = [h for h in self.site.hosts if h.name not in self.unreachable]
                site = self.site if len(alive) == len(self.site.hosts) else self.site.model_copy(update={"hosts": alive})
                self._facts = facts.gather(site, self.connections)
            return self._facts

    def ip(self, host: Host) -> str:
        return self.facts.ips.get(host.name, host.internal_address or host.address)

    def reachable(self, hosts: Iterable[Host]) -> list[Host]:
        return [h for h in hosts if h.name not in self.unreachable]

    def run(self, host: Host | str, command: str, *, sudo: bool = True, timeout: float = 60,
            stdin: str | None = None) -> Result:
        """Run a read-only probe on a host (output is not streamed: the diagnosis carries it)."""
        name = host if isinstance(host, str) else host.name
        return self.connections.get(name).run(command, sudo=sudo, timeout=timeout, stdin=stdin)

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


# ------------------------------------------------------------------------ engine


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


def _emit(sink: Sink, d: Diagnosis) -> None:
    sink(CheckResult(f"doctor:{d.check}", d.host, d.summary, d.ok, d.detail, d.skipped))


def _checks_for(site: Site, only: set[str] | None = None) -> list[Any]:
    from hubwizard.doctor import checks as doctor_checks

    return [c for c in doctor_checks.CHECKS
            if site.site.track in c.tracks and c.applies(site) and (only is None or c.name in only)]


def _run_check(ctx: DoctorContext, check: Any) -> list[Diagnosis]:
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
    sink = _redacting(sink or discard, session)
    ctx = DoctorContext(session, connections, sink)
    out = [d for d in _connect_all(ctx) if not d.ok or only is None]
    for d in out:
        _emit(sink, d)
    if ctx.site.hub_host.name in ctx.unreachable:
        return out
    for check in _checks_for(ctx.site, only):
        for d in _run_check(ctx, check):
            _emit(sink, d)
            out.append(d)
    return out


def apply_fix(session: Any, connections: Any, diagnosis: Diagnosis, sink: Sink | None = None) -> Diagnosis:
    """Run the fix of a failed diagnosis, then re-run that check and return its new verdict
    for the same host (a failed fix command comes back as a failed diagnosis naming it)."""
    from hubwizard.doctor import checks as doctor_checks

    sink = _redacting(sink or discard, session)
    if not fixable(diagnosis):
        return replace(diagnosis, summary=f"no automatic fix: {diagnosis.fix_title or diagnosis.summary}")
    check = doctor_checks.by_name(diagnosis.check)
    ctx = DoctorContext(session, connections, sink)
    failure = (check.fix or _run_fix_commands)(ctx, diagnosis)
    if failure is not None:
        d = Diagnosis(diagnosis.check, diagnosis.host, False, f"the fix failed: {failure}", diagnosis.detail,
                      diagnosis.fix_title, diagnosis.fix_commands)
        _emit(sink, d)
        return d
    deadline = time.monotonic() + check.settle
    while True:  # a restarted daemon or container needs a moment: re-check until it passes or settle ends
        result = _recheck(ctx, check, diagnosis)
        if result.ok or result.skipped or time.monotonic() >= deadline:
            break
        time.sleep(2)
    _emit(sink, result)
    return result


def _recheck(ctx: DoctorContext, check: Any, diagnosis: Diagnosis) -> Diagnosis:
    again = check.recheck(ctx, diagnosis) if check.recheck else _run_check(ctx, check)
    mine = [d for d in again if d.host == diagnosis.host] or again
    return next((d for d in mine if not d.ok and not d.skipped), None) or (
        mine[0] if mine else Diagnosis(diagnosis.check, diagnosis.host, True, "no longer reported"))


def _run_fix_commands(ctx: DoctorContext, diagnosis: Diagnosis) -> str | None:
    """The default fix: the diagnosis' commands, in order, as root on its host; stop at a failure."""
    transport = ctx.connections.get(diagnosis.host)
    step = f"doctor:{diagnosis.check}"
    for command in diagnosis.fix_commands:
        ctx.sink(CommandStarted(step, diagnosis.host, "apply", command))
        res = transport.run(command, sudo=True, timeout=300,
                            on_line=lambda s, line: ctx.sink(OutputLine(step, diagnosis.host, s, line)))
        if not res.ok:
            tail = "\n".join(res.output.splitlines()[-5:])
            return f"`{command}` exited {res.exit_code} on {diagnosis.host}: {tail}"
    return None


def _redacting(sink: Sink, session: Any) -> Sink:
    from hubwizard.engine.runner import redacting

    return redacting(sink, Redactor(session.secrets.all_values()))


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
    from hubwizard.doctor import checks as doctor_checks

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
        fixes: list[dict[str, Any]] = []
        if fix:
            diagnoses, fixes = _fix_all(session, conns, diagnoses, yes, as_json)
    finally:
        conns.close()
    code = exit_code(diagnoses)
    if as_json:
        print(json.dumps({"command": "doctor", "site": session.site.site.name, "exit_code": code,
                          "diagnoses": [asdict(d) for d in diagnoses], "fixes": fixes}, indent=2))
    else:
        failed = sum(1 for d in diagnoses if not d.ok and not d.skipped)
        skipped = sum(1 for d in diagnoses if d.skipped)
        print(f"\ndoctor: {len(diagnoses) - failed - skipped} passed, {failed} failed, {skipped} cannot run here")
    return code


def _fix_all(session: Any, conns: Any, diagnoses: list[Diagnosis], yes: bool,
             quiet: bool) -> tuple[list[Diagnosis], list[dict[str, Any]]]:
    """Offer each failed check's fix (ask unless --yes); return the updated diagnoses."""
    out, fixes = [], []
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
        fixes.append({"check": d.check, "host": d.host, "fixed": new.ok, "after": asdict(new)})
        if not quiet:
            print(format_diagnosis(new), flush=True)
        out.append(new)
    return out, fixes
