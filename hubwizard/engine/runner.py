"""The recipe engine: check -> diff -> apply -> verify, per step and host, journaled.

A plan runs the same checks with apply switched off, and goes on to the end whatever it
finds, so it can be reviewed whole: what a check cannot see until an earlier step has run is
"needs STEP first" (engine/planning.py decides), a host that is down still gets its commands
listed. Steps run in order; the hosts of a step run in parallel where the step allows it. Resume comes from the journal: a step
journaled done whose inputs are unchanged and whose check still passes is skipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import traceback
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jinja2

from hubwizard.core.config import Host, Site
from hubwizard.core.errors import ConfigError, HubwizardError, UnreachableError
from hubwizard.core.events import (
    CheckResult,
    CommandStarted,
    Event,
    HostResult,
    Mode,
    OutputLine,
    Phase,
    Sink,
    Status,
    StepFinished,
    StepStarted,
)
from hubwizard.core.journal import Journal
from hubwizard.core.redact import Redactor
from hubwizard.core.secrets import Secrets
from hubwizard.core.steps import Item, Step
from hubwizard.core.templating import environment, render_asset, render_command
from hubwizard.engine import calls as actions
from hubwizard.engine import planning
from hubwizard.engine.calls import CallResult, RunState, StepContext
from hubwizard.remote import hostlock
from hubwizard.remote.connections import Connections

if TYPE_CHECKING:
    from hubwizard.core.render import Facts


@dataclass
class ItemOutcome:
    ok: bool
    label: str
    output: str = ""
    changed: bool = True
    skipped: bool = False


@dataclass
class RunSummary:
    """Per (step, host) status of a run, and the exit code it maps to."""

    results: list[HostResult] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if any(r.status == "unreachable" for r in self.results):
            return 3
        if any(r.status == "failed" for r in self.results) or any(not c.ok and not c.skipped for c in self.checks):
            return 1
        return 0


def redacting(sink: Sink, redactor: Redactor) -> Sink:
    """Wrap a sink so no text field of any event can carry a secret."""

    def emit(event: Event) -> None:
        changes: dict[str, Any] = {
            f.name: redactor(getattr(event, f.name))
            for f in dataclasses.fields(event)
            if isinstance(getattr(event, f.name), str)
        }
        if isinstance(event, HostResult) and event.commands:
            changes["commands"] = tuple(redactor(c) for c in event.commands)
        sink(dataclasses.replace(event, **changes))

    return emit


class Engine:
    """Runs steps of one site against its hosts."""

    def __init__(
        self,
        site: Site,
        steps: list[Step],
        connections: Connections,
        secrets: Secrets,
        journal: Journal,
        sink: Sink,
        facts: Facts | None = None,
    ) -> None:
        self.site, self.steps, self.conns, self.secrets, self.journal = site, steps, connections, secrets, journal
        self.redactor = Redactor(secrets.all_values())
        self.emit = redacting(sink, self.redactor)
        # state_dir: the site's .hubwizard/NAME folder, for calls that keep local state (e.g. the classic TLS CA)
        self.state = RunState(data={"state_dir": str(journal.path.parent)})
        self.run_id = uuid.uuid4().hex[:12]
        self._facts = facts
        self._gates: dict[str, threading.Lock] = {}  # per host: the hostlock wait, once per run
        self._settled: dict[str, str | None] = {}  # per host: None, or the output of a wait that failed
        self._plan_latest: dict = {}  # plan: the journal's latest record per (step, host), read once

    # -- context ----------------------------------------------------------------
    @property
    def facts(self) -> Facts:
        if self._facts is None:
            from hubwizard.engine import facts

            self._facts = facts.gather(self.site, self.conns)
        return self._facts

    @property
    def gathered_facts(self) -> Facts | None:
        """The facts this run probed, or None: for reports after a run, which must not probe."""
        return self._facts

    def context(self, host: Host) -> dict[str, Any]:
        from hubwizard.core.render import template_context

        ctx = template_context(self.site, self.facts)
        ctx["host"] = host
        ctx["host_ip"] = self.facts.ips.get(host.name, host.address)
        ctx["state"] = self.state.data
        return ctx

    def hosts_for(self, step: Step, only: set[str] | None = None) -> list[Host]:
        return [h for h in self.site.targets(step.targets) if only is None or h.name in only]

    # -- rendering --------------------------------------------------------------
    def _when(self, expr: str | None, ctx: dict[str, Any]) -> bool:
        if not expr:
            return True
        try:
            return bool(jinja2.Environment(undefined=jinja2.StrictUndefined).compile_expression(expr)(**ctx))
        except jinja2.UndefinedError as exc:
            raise ConfigError(f"recipe condition {expr!r}: {exc.message}") from None

    def _stdin(self, item: Item, ctx: dict[str, Any]) -> str | None:
        if item.stdin is None:
            return None
        env = jinja2.Environment(undefined=jinja2.StrictUndefined)
        return env.from_string(item.stdin).render(ctx, secret=lambda name: self._secret(name))

    def _path(self, item: Item, ctx: dict[str, Any]) -> str:
        """A file item's ``path:`` may use values (``{{ paths.daemon_json }}``): rendered as one
        plain token (no shell, no spaces), so it lands where the recipe says, never literally."""
        if not item.path or "{" not in item.path:
            return item.path or ""
        try:
            return environment("token").from_string(item.path).render(ctx)
        except jinja2.UndefinedError as exc:
            raise ConfigError(f"file path {item.path!r}: unknown value: {exc.message}") from None

    def _secret(self, name: str) -> str:
        value = self.secrets.get(name) or ""
        self.redactor.add(value)
        return value

    def rendered(self, step: Step, ctx: dict[str, Any]) -> list[tuple[Item, str]]:
        """Every apply item with what it will do, as the admin would read it."""
        out = []
        for item in step.apply:
            if not self._when(item.when, ctx):
                continue
            if item.run:
                out.append((item, render_command(item.run, ctx)))
            elif item.file:
                out.append((item, f"write {self._path(item, ctx)} (mode {item.mode:o}) from {item.file}"))
            else:
                out.append((item, f"{item.call}({json.dumps(item.args, sort_keys=True)})" if item.args else f"{item.call}()"))
        return out

    def digest(self, step: Step, ctx: dict[str, Any]) -> str:
        """A hash of everything the step would do on this host: changes mean re-run."""
        h = hashlib.sha256(step.id.encode())
        for item, text in self.rendered(step, ctx):
            h.update(text.encode())
            if item.file:
                h.update(render_asset(item.file, ctx).encode())
        return h.hexdigest()[:16]

    # -- items ------------------------------------------------------------------
    def _exec(self, step: Step, host: Host, phase: Phase, item: Item, ctx: dict[str, Any]) -> ItemOutcome:
        t = self.conns.get(host.name)
        if item.run:
            cmd = render_command(item.run, ctx)
            self.emit(CommandStarted(step.id, host.name, phase, cmd))

            def line(stream: str, text: str) -> None:
                self.emit(OutputLine(step.id, host.name, stream, text))

            timeout = item.timeout or self.site.ssh.command_timeout
            sent = hostlock.locked(cmd, timeout) if phase == "apply" else cmd
            res = t.run(sent, sudo=item.sudo, stdin=self._stdin(item, ctx), timeout=timeout, on_line=line)
            return ItemOutcome(res.exit_code in item.ok_codes, cmd, self.redactor(res.output))
        if item.file:
            content = render_asset(item.file, ctx).encode()
            want = hashlib.sha256(content).hexdigest()
            path = self._path(item, ctx)
            have = t.run(f"sha256sum {_q(path)} 2>/dev/null", sudo=item.sudo).stdout.split()[:1]
            label = f"file {path}"
            if phase == "apply" and have != [want]:
                self.emit(CommandStarted(step.id, host.name, "apply", f"write {path} from {item.file}"))
                t.put(content, path, mode=item.mode, sudo=item.sudo)
                return ItemOutcome(True, label)
            return ItemOutcome(have == [want], label, "" if have == [want] else "content differs", changed=False)
        fn = actions.get(item.call or "")
        sc = StepContext(step.id, host, t, self.site, self.facts, self.secrets, self.state, self.emit,
                         self.conns, ctx, phase)
        self.emit(CommandStarted(step.id, host.name, phase, f"{item.call}()"))
        called: CallResult = fn(sc, **item.args)
        for v in self.secrets.all_values():
            self.redactor.add(v)
        return ItemOutcome(called.ok, item.label, self.redactor(called.message), called.changed, called.skipped)

    def _phase(self, step: Step, host: Host, phase: Phase, ctx: dict[str, Any]) -> tuple[bool, ItemOutcome | None]:
        """Run one phase's items in order; stop at the first failure."""
        for item in getattr(step, phase):
            if not self._when(item.when, ctx):
                continue
            out = self._exec(step, host, phase, item, ctx)
            if phase == "verify":
                self.emit(CheckResult(step.id, host.name, item.label, out.ok, _tail(out.output, 3), out.skipped))
            if not out.ok and not out.skipped:
                return False, out
        return True, None

    # -- one step on one host ------------------------------------------------------
    def _host(self, step: Step, host: Host, mode: Mode) -> HostResult:
        try:
            return self._host_inner(step, host, mode)
        except UnreachableError as exc:
            if mode == "apply":  # the message may quote a command: redacted like any output
                self.journal.record(self.run_id, step.id, host.name, "failed", message=self.redactor(str(exc)))
            fix = self.redactor(exc.fix) if exc.fix else exc.fix
            return HostResult(step.id, host.name, "unreachable", self.redactor(exc.message), fix=fix)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - a host's failure is reported, never a traceback
            if mode == "apply":
                self.journal.record(self.run_id, step.id, host.name, "failed", message=self.redactor(str(exc)))
            return HostResult(step.id, host.name, "failed",
                              self.redactor(f"{type(exc).__name__}: {exc}{_where(exc)}"))

    def _host_inner(self, step: Step, host: Host, mode: Mode) -> HostResult:
        ctx = self.context(host)
        if not self._when(step.when, ctx):
            return HostResult(step.id, host.name, "skipped", "not needed for this site")
        if mode == "verify":
            ok, bad = self._phase(step, host, "verify", ctx)
            return self._result(step, host, "ok" if ok else "failed", bad)
        if mode == "apply" and (busy := self._settle(step, host)) is not None:
            return busy
        digest, same, _, converged = self._decide(step, host, ctx, self.journal.latest())  # plan: see _plan
        if converged:
            if not same:
                self.journal.record(self.run_id, step.id, host.name, "done", digest, "already in the desired state")
            return HostResult(step.id, host.name, "unchanged", "already in the desired state")
        self.journal.record(self.run_id, step.id, host.name, "started", digest)
        ok, bad = self._phase(step, host, "apply", ctx)
        if ok:
            ok, bad = self._phase(step, host, "verify", ctx)
        result = self._result(step, host, "changed" if ok else "failed", bad)
        self.journal.record(self.run_id, step.id, host.name, "done" if ok else "failed", digest,
                            result.message if not ok else "")
        return result

    def _result(self, step: Step, host: Host, status: Status, bad: ItemOutcome | None) -> HostResult:
        if bad is None:
            return HostResult(step.id, host.name, status)
        tail = _tail(bad.output, 15)
        return HostResult(step.id, host.name, status, f"failed: {bad.label}", bad.label, tail,
                          step.fix_for(bad.output) or generic_fix(bad.output, host))

    # -- runs ---------------------------------------------------------------------
    def run(
        self,
        mode: Mode = "apply",
        *,
        start: str | None = None,
        only: str | None = None,
        hosts: set[str] | None = None,
        steps: Iterable[Step] | None = None,
    ) -> RunSummary:
        """mode: plan | apply | verify. apply stops after the first step that fails anywhere; a
        plan lists every step on every host (see _plan)."""
        chosen = self._select(list(steps or self.steps), start, only)
        summary = RunSummary()
        listener = _Collector(summary, self.emit)
        emit, self.emit = self.emit, listener
        try:
            if mode == "verify":
                self._verify_concurrently(chosen, hosts)
                return summary
            if mode == "plan":
                self._plan(chosen, hosts)
                return summary
            if mode == "apply":
                chosen = chosen[self._converged_prefix(chosen, hosts):]
            for step in chosen:
                targets = self.hosts_for(step, hosts)
                if not targets:
                    continue
                if mode == "verify" and not step.verify:
                    continue
                self.emit(StepStarted(step.id, step.title, tuple(h.name for h in targets)))
                results = self._run_hosts(step, targets, mode)
                for r in results:
                    self.emit(r)
                bad = [r for r in results if r.status in ("failed", "unreachable")]
                self.emit(StepFinished(step.id, "failed" if bad else _overall(results)))
                if bad and (mode == "apply" or any(r.status == "unreachable" for r in bad)):
                    break
        finally:
            self.emit = emit
        return summary

    # -- plan -------------------------------------------------------------------
    def _plan(self, chosen: list[Step], hosts: set[str] | None) -> None:
        """Every chosen step on every host, whatever happened before: a check that cannot pass
        until an earlier step has run says "needs STEP first", a host that cannot be reached
        still gets its commands listed ("not checked"), so the whole plan can be reviewed."""
        names = [h.name for s in chosen for h in self.hosts_for(s, hosts)]
        down = self._probe(list(dict.fromkeys(names)))
        conns, self.conns = self.conns, _KnownDown(self.conns, down)  # type: ignore[assignment]
        self._plan_latest = self.journal.latest()
        try:
            self._plan_facts(down)
            book = planning.PlanBook()
            for step in chosen:
                targets = self.hosts_for(step, hosts)
                if not targets:
                    continue
                self.emit(StepStarted(step.id, step.title, tuple(h.name for h in targets)))
                results = self._plan_hosts(step, targets, book, down)
                for r in results:
                    self.emit(r)
                    if planning.pending(r.status, bool(r.commands)):
                        book.add(step.id, r.host)
                bad = {r.status for r in results} & {"failed", "unreachable"}
                status = "failed" if "failed" in bad else "unreachable" if bad else _overall(results)
                self.emit(StepFinished(step.id, status))
        finally:
            self.conns = conns

    def _probe(self, names: list[str]) -> dict[str, UnreachableError]:
        """Connect to every host at once: an unreachable host costs one timeout for the whole
        plan, not one per step. The hosts that could not be reached, with why."""
        def one(name: str) -> tuple[str, UnreachableError | None]:
            try:
                self.conns.get(name)
                return name, None
            except UnreachableError as exc:
                return name, exc

        if not names:
            return {}
        with ThreadPoolExecutor(max_workers=min(32, len(names))) as pool:
            return {n: e for n, e in pool.map(one, names) if e is not None}

    def _plan_facts(self, down: dict[str, UnreachableError]) -> None:
        """Facts from the hosts that answer; what the site file says for the others (the hub
        down: all from the site file), so every step's commands can still be shown."""
        from hubwizard.core.render import Facts
        from hubwizard.engine import facts as gather

        if self._facts is not None:
            return
        offline = Facts.offline(self.site)
        if not down:
            try:
                self._facts = gather.gather(self.site, self.conns)
            except HubwizardError:
                raise  # a message with its fix (no internal IP for the hub, a host lost since the probe)
            except Exception:  # noqa: BLE001 - the checks on each host report what is wrong there
                self._facts = offline
            return
        if self.site.hub_host.name in down or self.site.nfs_host.name in down:
            self._facts = offline
            return
        reduced = self.site.model_copy(update={"hosts": [h for h in self.site.hosts if h.name not in down]})
        try:
            found = gather.gather(reduced, self.conns)
        except UnreachableError:
            self._facts = offline
            return
        self._facts = dataclasses.replace(found, ips={**offline.ips, **found.ips})

    def _plan_hosts(self, step: Step, targets: list[Host], book: planning.PlanBook,
                    down: dict[str, UnreachableError]) -> list[HostResult]:
        def one(host: Host) -> HostResult:
            try:
                return self._plan_host(step, host, book, down)
            except ConfigError:
                raise
            except UnreachableError as exc:  # e.g. the facts of a host lost mid-plan
                return HostResult(step.id, host.name, "unreachable", "not checked: host unreachable",
                                  output_tail=self.redactor(exc.message), fix=exc.fix)
            except Exception as exc:  # noqa: BLE001 - one line for people, never a traceback
                return HostResult(step.id, host.name, "failed", self.redactor(planning.crash_line(exc, host.name)))

        if step.parallel and len(targets) > 1:
            with ThreadPoolExecutor(max_workers=len(targets)) as pool:
                return list(pool.map(one, targets))
        return [one(h) for h in targets]

    def _plan_host(self, step: Step, host: Host, book: planning.PlanBook,
                   down: dict[str, UnreachableError]) -> HostResult:
        """One step on one host in a plan: never a raw exception, always the commands."""
        ctx = self.context(host)
        if not self._when(step.when, ctx):
            return HostResult(step.id, host.name, "skipped", "not needed for this site")
        commands = tuple(t for _, t in self.rendered(step, ctx))
        if host.name in down:
            return self._not_checked(step, host, down, commands)
        digest = self.digest(step, ctx)
        prev = self._plan_latest.get((step.id, host.name))
        done_digest = prev.digest if prev is not None and prev.phase == "done" else None
        passed, crashed, bad = False, "", None
        if step.check:
            try:
                passed, bad = self._phase(step, host, "check", ctx)
            except _HostDown as exc:  # the check asks another host, one that is down
                return HostResult(step.id, host.name, "unreachable", f"not checked: it asks {exc.host}, "
                                  f"which is unreachable", output_tail=self.redactor(exc.message), fix=exc.fix,
                                  commands=commands)
            except UnreachableError as exc:  # the connection went away during the plan
                down[host.name] = exc
                return self._not_checked(step, host, down, commands)
            except ConfigError:
                raise
            except Exception as exc:  # noqa: BLE001 - one line for people, decided below
                crashed = self.redactor(planning.crash_line(exc, host.name))
        outcome = planning.CheckOutcome(bool(step.check), passed, crashed, done_digest == digest,
                                        done_digest not in (None, digest))
        decision = planning.decide(step.id, step.needs, host.name, outcome, book)
        if decision.state == "unchanged":
            return HostResult(step.id, host.name, "unchanged", decision.message)
        if decision.state == "failed":
            return HostResult(step.id, host.name, "failed", decision.message, fix=generic_fix(crashed, host),
                              commands=commands)
        why = (bad.label, _tail(bad.output, 5)) if bad is not None else ("", "")  # the check that did not pass
        return HostResult(step.id, host.name, "would-change", decision.message, *why, commands=commands,
                          needs=decision.needs)

    def _not_checked(self, step: Step, host: Host, down: dict[str, UnreachableError],
                     commands: tuple[str, ...]) -> HostResult:
        """A host that is down (or behind a jump host that is): its commands, and why (the jump
        host's cause when that is where it ends)."""
        jump_down = host.jump is not None and host.jump in down
        exc = down[host.jump] if jump_down and host.jump else down[host.name]
        return HostResult(step.id, host.name, "unreachable", planning.unreachable_message(host.jump, jump_down),
                          output_tail=self.redactor(exc.message), fix=exc.fix, commands=commands)

    VERIFY_STEPS_PER_HOST = 4  # steps checked at once on one host: well under sshd's MaxSessions (10)

    def _verify_concurrently(self, chosen: list[Step], hosts: set[str] | None) -> None:
        """verify only reads, so every (step, host) pair runs at once instead of step after step
        (the wall time becomes the slowest chain of checks, not their sum); each pair's events
        are held and replayed in step order, so the report reads exactly like a sequential run."""
        work = [(s, t) for s in chosen if s.verify for t in [self.hosts_for(s, hosts)] if t]
        if not work:
            return
        _ = self.facts  # gathered once, before the threads need them
        outer, local = self.emit, threading.local()

        def route(event: Event) -> None:  # a pair's own events wait for their turn; others pass
            buffer = getattr(local, "buffer", None)
            if buffer is None:
                outer(event)
            else:
                buffer.append(event)

        self.emit = route
        names = {h.name for _, t in work for h in t}
        slots = {n: threading.Semaphore(self.VERIFY_STEPS_PER_HOST) for n in names}
        solo = {n: threading.Lock() for n in names}

        def one(step: Step, host: Host) -> tuple[list[Event], HostResult]:
            local.buffer = []
            try:
                with slots[host.name]:
                    result = self._host(step, host, "verify")
                if result.status == "unreachable":
                    # sshd refuses channels past MaxSessions (a call's Docker client holds some):
                    # once more, alone on this host, before calling the host unreachable
                    local.buffer = []
                    with solo[host.name]:
                        for _ in range(self.VERIFY_STEPS_PER_HOST):
                            slots[host.name].acquire()
                        try:
                            result = self._host(step, host, "verify")
                        finally:
                            for _ in range(self.VERIFY_STEPS_PER_HOST):
                                slots[host.name].release()
                return local.buffer, result
            finally:
                local.buffer = None

        try:
            with ThreadPoolExecutor(max_workers=min(32, sum(len(t) for _, t in work))) as pool:
                rows = [[pool.submit(one, s, h) for h in t] for s, t in work]
                for (step, targets), row in zip(work, rows, strict=True):
                    outer(StepStarted(step.id, step.title, tuple(h.name for h in targets)))
                    results = []
                    for fut in row:
                        events, result = fut.result()
                        for event in events:
                            outer(event)
                        results.append(result)
                    for r in results:
                        outer(r)
                    unreachable = any(r.status == "unreachable" for r in results)
                    failed = unreachable or any(r.status == "failed" for r in results)
                    outer(StepFinished(step.id, "failed" if failed else _overall(results)))
                    if unreachable:  # as a sequential run would: report nothing after it
                        for later in rows[rows.index(row) + 1:]:
                            for fut in later:
                                fut.cancel()
                        break
        finally:
            self.emit = outer

    def _converged_prefix(self, chosen: list[Step], hosts: set[str] | None) -> int:
        """apply: every step's check on every host at once (checks only read), then the leading
        steps found converged are reported (and journaled) as a sequential run would; returns
        how many. A converged site costs its slowest check instead of the sum of all of them.
        The first step not converged and every step after it run one by one as always, their
        checks again included (the steps before them may have changed the hosts by then)."""
        work = [(s, t) for s in chosen for t in [self.hosts_for(s, hosts)]]
        pairs = [(s, h) for s, t in work for h in t]
        if len(work) < 2 or not pairs:
            return 0
        try:
            _ = self.facts
        except Exception:  # noqa: BLE001 - the sequential run reports it with host and fix
            return 0
        latest = self.journal.latest()
        outer, local = self.emit, threading.local()

        def route(event: Event) -> None:
            buffer = getattr(local, "buffer", None)
            if buffer is None:
                outer(event)
            else:
                buffer.append(event)

        slots = {h.name: threading.Semaphore(self.VERIFY_STEPS_PER_HOST) for _, h in pairs}

        def one(step: Step, host: Host) -> tuple[list[Event], tuple[HostResult, str | None] | None]:
            local.buffer = []
            try:
                with slots[host.name]:
                    return local.buffer, self._precheck(step, host, latest)
            except Exception:  # noqa: BLE001 - not converged: the sequential run says why
                return local.buffer, None
            finally:
                local.buffer = None

        # route stays the emitter for the rest of run(): the events of checks still running when
        # the prefix ends go to their own buffers, never into the sequential run's report.
        self.emit = route
        pool = ThreadPoolExecutor(max_workers=min(32, len(pairs)))
        futures = {(s.id, h.name): pool.submit(one, s, h) for s, h in pairs}
        done = 0
        try:
            for step, targets in work:
                rows = [futures[(step.id, h.name)].result() for h in targets]
                if any(decision is None for _, decision in rows):
                    break
                if targets:
                    outer(StepStarted(step.id, step.title, tuple(h.name for h in targets)))
                    for events, _ in rows:
                        for event in events:
                            outer(event)
                    for _, (result, record) in rows:  # type: ignore[misc]
                        if record is not None:
                            self.journal.record(self.run_id, step.id, result.host, "done", record,
                                                "already in the desired state")
                        outer(result)
                    outer(StepFinished(step.id, _overall([r for _, (r, _) in rows])))  # type: ignore[misc]
                done += 1
        finally:  # a later step's check is not waited for once an earlier step has work to do
            pool.shutdown(wait=False, cancel_futures=True)
        return done

    def _decide(self, step: Step, host: Host, ctx: dict[str, Any], latest: dict) -> tuple[str, bool, bool, bool]:
        """Is this step converged on this host? (digest, same inputs as journaled done,
        inputs changed since, converged). Runs the step's read-only check."""
        digest = self.digest(step, ctx)
        prev = latest.get((step.id, host.name))
        done = prev is not None and prev.phase == "done"
        same = prev is not None and done and prev.digest == digest
        changed_inputs = prev is not None and done and prev.digest != digest
        check_ok = bool(step.check) and self._phase(step, host, "check", ctx)[0]
        return digest, same, changed_inputs, (check_ok and not changed_inputs) or (not step.check and same)

    def _precheck(self, step: Step, host: Host, latest: dict) -> tuple[HostResult, str | None] | None:
        """The convergence decision of _host_inner (apply), without changing anything: the
        result to report and the digest to journal (None: already journaled), or None when
        the step has work to do on this host."""
        ctx = self.context(host)
        if not self._when(step.when, ctx):
            return HostResult(step.id, host.name, "skipped", "not needed for this site"), None
        if self._settle(step, host) is not None:
            return None
        digest, same, _, converged = self._decide(step, host, ctx, latest)
        if not converged:
            return None
        return HostResult(step.id, host.name, "unchanged", "already in the desired state"), None if same else digest

    def _settle(self, step: Step, host: Host) -> HostResult | None:
        """apply, once per host and run: wait until no command of an earlier (killed) run still
        holds the host lock, before any check looks at the host. A failure to report, or None."""
        with self._gates.setdefault(host.name, threading.Lock()):
            if host.name not in self._settled:
                timeout = self.site.ssh.command_timeout

                def line(stream: str, text: str) -> None:
                    self.emit(OutputLine(step.id, host.name, stream, text))

                res = self.conns.get(host.name).run(hostlock.wait_until_free(timeout), timeout=timeout + 30,
                                                    on_line=line)
                self._settled[host.name] = None if res.ok else res.output
        output = self._settled[host.name]
        if output is None:
            return None
        return HostResult(step.id, host.name, "failed", "an earlier hubwizard command is still running on this host",
                          "wait for the host lock", _tail(output, 15),
                          f"find it with `ps -ef --forest` on {host.name} and let it end (or kill it), then re-run apply")

    def _run_hosts(self, step: Step, targets: list[Host], mode: Mode) -> list[HostResult]:
        if step.parallel and len(targets) > 1:
            with ThreadPoolExecutor(max_workers=len(targets)) as pool:
                return list(pool.map(lambda h: self._host(step, h, mode), targets))
        return [self._host(step, h, mode) for h in targets]

    def _select(self, steps: list[Step], start: str | None, only: str | None) -> list[Step]:
        ids = [s.id for s in steps]
        for name, flag in ((start, "--from"), (only, "--only")):
            if name is not None and name not in ids:
                raise ConfigError(f"{flag} {name!r}: no such step", fix=f"steps are: {', '.join(ids)}")
        if only:
            return [s for s in steps if s.id == only]
        if start:
            return steps[ids.index(start):]
        return steps


class _Collector:
    """Keeps results for the summary while passing events on."""

    def __init__(self, summary: RunSummary, sink: Sink) -> None:
        self.summary, self.sink = summary, sink

    def __call__(self, event: Event) -> None:
        if isinstance(event, HostResult):
            self.summary.results.append(event)
        elif isinstance(event, CheckResult):
            self.summary.checks.append(event)
        self.sink(event)


class _HostDown(UnreachableError):
    """A host this plan already found unreachable, asked again: at once, no second timeout."""

    def __init__(self, host: str, cause: UnreachableError) -> None:
        super().__init__(cause.message, fix=cause.fix)
        self.host = host


class _KnownDown:
    """Connections that answer at once for the hosts a plan found down, so a check on one host
    that asks another (a node's check asks the manager) does not wait for a timeout again."""

    def __init__(self, conns: Connections, down: dict[str, UnreachableError]) -> None:
        self._conns, self._down = conns, down

    def get(self, name: str):
        if name in self._down:
            raise _HostDown(name, self._down[name])
        return self._conns.get(name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conns, name)


_OVERALL_ORDER: tuple[Status, ...] = ("changed", "would-change", "ok", "unchanged")


def _overall(results: list[HostResult]) -> Status:
    statuses = {r.status for r in results}
    for s in _OVERALL_ORDER:
        if s in statuses:
            return s
    return "skipped"


# Failures any step can hit, whatever its recipe says: (substring of the output, fix).
_GENERIC_FIXES = (
    ("incorrect password attempt", "the sudo password of {user} on {host} was refused: correct sudo_password in the "
     "secrets file (or HUBWIZARD_SUDO_PASSWORD), then run again"),
    ("a password is required", "sudo on {host} asks {user} for a password: set sudo = \"password\" for this host in "
     "the site file (the password is asked once, never stored in logs), or give {user} NOPASSWD sudo"),
    ("is not in the sudoers file", "{user} may not use sudo on {host}: add it to sudoers (e.g. /etc/sudoers.d/), "
     "or connect as a user that may"),
    *((m, "dockerd is not running on {host}: `journalctl -u docker -n 50` there says why; `hubwizard apply --from "
       "docker` starts it again") for m in ("cannot connect to the docker daemon", "is dockerd installed and running",
                                            "error while fetching server api version")),
)


def generic_fix(output: str, host: Host) -> str | None:
    """The fix for a failure that is about the host, not the step (sudo refused, ...)."""
    low = output.lower()
    for match, fix in _GENERIC_FIXES:
        if match in low:
            return fix.format(user=host.user, host=host.name)
    return None


def _tail(text: str, n: int) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def _q(path: str | None) -> str:
    import shlex

    return shlex.quote(path or "")


def _where(exc: BaseException) -> str:
    """Where an unexpected exception came from (our last frame and the innermost one), one line:
    a report a developer can act on without a traceback on the admin's screen."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/hubwizard/" in f.filename]
    picked = [f for f in (ours[-1] if ours else None, frames[-1] if frames else None) if f is not None]
    places = dict.fromkeys(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name}" for f in picked)
    return f" (at {', '.join(places)})" if places else ""
