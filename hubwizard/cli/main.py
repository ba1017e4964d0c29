"""The command line: the stable contract of DESIGN.md.

Only argparse is imported at start so ``--help`` is instant; each command imports what it
needs. Exit codes: 0 ok, 1 a check or step failed, 2 bad input, 3 cannot reach a host.
Errors meant for people are printed as messages, never as tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

from hubwizard.core.errors import UsageError  # light: plain classes
from hubwizard.core.events import Mode  # light: plain classes


def _site_arg(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("-c", "--config", dest="config", metavar="SITE", required=required,
                   default=None if required else os.environ.get("HUBWIZARD_SITE"),
                   help="the site file (TOML)")
    p.add_argument("--recipes", metavar="DIR", help=argparse.SUPPRESS)


def _conn_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--accept-new-host-keys", action="store_true",
                   help="trust SSH host keys not yet in known_hosts (a changed key is still refused)")


def _limit_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", metavar="HOST[,HOST]", help="run only on these hosts of the site file")


_JSON_ERRORS = False  # main() sets it when the command line asks for --json


class _Parser(argparse.ArgumentParser):
    """argparse, except that with --json a bad flag is the same JSON error document as any other."""

    def error(self, message: str):
        if _JSON_ERRORS:
            print(json.dumps(error_document("bad input", f"{self.prog}: {message}", 2)))
            sys.exit(2)
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hubwizard",
        description="Guided, resumable installer and live monitor for JupyterHub on Docker Swarm, over SSH.",
    )
    parser.add_argument("--version", action="version", version="hubwizard 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("wizard", help="the TUI: a new site, or resume one")
    _site_arg(p, required=False)
    p = sub.add_parser("init", help="plain-terminal questions that write a site file")
    _site_arg(p, required=False)
    p.add_argument("--example", action="store_true",
                   help="write the commented example site file (1 hub + 2 nodes) instead of asking")
    p.add_argument("--force", action="store_true", help="with --example: overwrite an existing file")

    p = sub.add_parser("plan", help="what each step would change, with the exact commands (read-only)")
    _site_arg(p)
    _conn_args(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--from", dest="start", metavar="STEP")
    p.add_argument("--only", metavar="STEP")
    p.add_argument("--diff", action="store_true",
                   help="also show a unified diff of every file that would change (read from the hosts)")
    _limit_arg(p)

    p = sub.add_parser("apply", help="converge the site; resumes from the journal")
    _site_arg(p)
    _conn_args(p)
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before changing hosts")
    p.add_argument("--from", dest="start", metavar="STEP", help="start at this step")
    p.add_argument("--only", metavar="STEP", help="run just this step")
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="show command output")
    _limit_arg(p)

    p = sub.add_parser("verify", help="run every verification check; exit 0 only if all pass")
    _site_arg(p)
    _conn_args(p)
    p.add_argument("--json", action="store_true")
    _limit_arg(p)

    p = sub.add_parser("status", help="journal: done / failed / pending per step and host")
    _site_arg(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("doctor", help="troubleshooting checks, diagnosis and fixes")
    _site_arg(p)
    _conn_args(p)
    p.add_argument("--fix", action="store_true", help="offer the fix of each failed check")
    p.add_argument("--yes", "-y", action="store_true", help="with --fix: apply fixes without asking")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("monitor", help="the live cluster monitor")
    _site_arg(p)
    _conn_args(p)
    p.add_argument("--interval", type=float, default=2.0, help="refresh interval in seconds")

    p = sub.add_parser("render", help="write every generated file for review")
    _site_arg(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR")

    p = sub.add_parser("add-node", help="scale out: run only what a new node needs")
    _site_arg(p)
    _conn_args(p)
    p.add_argument("host", metavar="HOST", help="name of the host in the site file")
    p.add_argument("--yes", "-y", action="store_true")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("teardown", help="undo services and swarm membership; data kept unless --purge-data")
    _site_arg(p)
    _conn_args(p)
    p.add_argument("--purge-data", action="store_true")
    p.add_argument("--yes", "-y", action="store_true")

    from hubwizard.cli import backup as backup_cli  # light: argparse only at import

    backup_cli.register(sub, _site_arg, _conn_args)
    try:
        from hubwizard.lab import cli as lab_cli

        lab_cli.register(sub)
    except ImportError:  # pragma: no cover - the lab is optional in a trimmed install
        pass
    return parser


def _wizard_by_default(argv: list[str]) -> list[str]:
    """`hubwizard -c SITE` means `hubwizard wizard -c SITE`: DESIGN.md's `hubwizard [wizard] [-c SITE]`."""
    if argv and (argv[0] in ("-c", "--config") or argv[0].startswith("--config=")):
        return ["wizard", *argv]
    return argv


def main(argv: list[str] | None = None) -> int:
    global _JSON_ERRORS
    argv = _wizard_by_default(sys.argv[1:] if argv is None else list(argv))
    _JSON_ERRORS = "--json" in argv
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "wizard"
    handler = _HANDLERS.get(command)
    try:
        if handler is None:
            from hubwizard.lab import cli as lab_cli

            return lab_cli.run(args)
        return handler(args)
    except KeyboardInterrupt:
        print("\ninterrupted: finished steps are journaled; run `hubwizard apply` again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place errors become messages
        return _report_error(exc, getattr(args, "json", False))


def _report_error(exc: Exception, as_json: bool) -> int:
    """The one place errors become messages: a line for people on stderr, or with --json the one
    error document every command prints on stdout (error_document)."""
    from hubwizard.core.errors import HubwizardError

    host = step = fix = None
    if isinstance(exc, HubwizardError):
        code, title, text, fix = exc.exit_code, exc.title, exc.message, exc.fix
        host, step = getattr(exc, "host", None), getattr(exc, "step", None)
    elif isinstance(exc, UsageError):
        code, title, text = 2, "bad input", str(exc)
    else:
        import traceback

        from hubwizard.core.redact import redact_known

        log = _crash_log(redact_known(traceback.format_exc()))  # no secret in a file left in /tmp
        code, title = 1, "internal error"
        text = redact_known(f"{type(exc).__name__}: {exc}")
        fix = f"this is a bug in hubwizard; details were written to {log}"
    if as_json:
        print(json.dumps(error_document(title, text, code, host=host, step=step, fix=fix)))
    else:
        print(f"hubwizard: {title}: {text}" + (f"\n  fix: {fix}" if fix else ""), file=sys.stderr)
    return code


def error_document(error: str, message: str, exit_code: int, *, host: str | None = None, step: str | None = None,
                   fix: str | None = None) -> dict:
    """The shape of an error under --json, the same for every command."""
    return {"error": error, "message": message, "host": host, "step": step, "fix": fix, "exit_code": exit_code}


def _crash_log(text: str) -> str:
    import tempfile

    fd, path = tempfile.mkstemp(prefix="hubwizard-crash-", suffix=".log")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


# ---------------------------------------------------------------- commands


def _open(args):
    from hubwizard.session import open_site

    return open_site(args.config, recipes_dir=args.recipes)


def _run(args, mode: Mode, **kw) -> int:
    from hubwizard.cli.report import HumanPrinter, JsonCollector

    session = _open(args)
    hosts = _limited(session.site, getattr(args, "limit", None))
    _site_notes(session.site, mode, args.json)
    collector = JsonCollector() if args.json else None
    sink = collector or HumanPrinter(verbose=getattr(args, "verbose", False), show_commands=mode == "apply")
    engine = session.engine(sink, accept_new_host_keys=args.accept_new_host_keys)
    diffs = None
    try:
        summary = engine.run(mode, hosts=hosts, **kw)
        if mode == "plan" and getattr(args, "diff", False):
            import hubwizard.actions.hub_spec  # noqa: F401 - registers the hub service's spec view
            from hubwizard.engine.diff import plan_diffs

            diffs = plan_diffs(engine, summary.results)
    finally:
        engine.conns.close()
    code = summary.exit_code
    if collector is None and mode in ("plan", "verify"):
        _endpoint_note(session.site, engine)
    if collector is not None:
        print(collector.document(mode, code, diffs=diffs))
    elif mode == "plan":
        from hubwizard.cli.report import diff_text, plan_summary

        if diffs is not None:
            print(diff_text(diffs, color=sys.stdout.isatty()))
        print(plan_summary(summary.results))
    else:
        _summary_line(summary, mode)
    return code


def _endpoint_note(site, engine) -> None:
    """plan and verify, swarm-mode: the endpoint mode apply uses and why, in one line (from the
    facts this run probed; none when no host answered)."""
    from hubwizard.core.endpoint import choose

    facts = engine.gathered_facts
    if site.site.track == "swarm-mode" and facts is not None:
        print(f"\n{choose(site, facts.ipvs).line}")


def _limited(site, limit: str | None) -> set[str] | None:
    """--limit HOST[,HOST]: the hosts named, all of them in the site file (exit 2 naming the first that is not)."""
    if limit is None:
        return None
    names = [n.strip() for n in limit.split(",") if n.strip()]
    known = [h.name for h in site.hosts]
    for name in names:
        if name not in known:
            raise UsageError(f"--limit {name!r}: no host of that name in the site file (hosts: {', '.join(known)})")
    if not names:
        raise UsageError("--limit: name at least one host")
    return set(names)


def _site_notes(site, mode: str, as_json: bool) -> None:
    """Warnings about an open login (stderr, red on a terminal) and, in plan, the OAuth callback URL."""
    from hubwizard.core.config import oauth_callback_url, site_warnings

    red = sys.stderr.isatty()
    for line in site_warnings(site):
        print(f"\x1b[1;31m{line}\x1b[0m" if red else line, file=sys.stderr)
    url = oauth_callback_url(site)
    if mode == "plan" and url and not as_json:
        print(f"OAuth callback URL (registered with {site.oauth.provider}): {url}")


def _summary_line(summary, mode: str) -> None:
    from collections import Counter

    counts = Counter(r.status for r in summary.results)
    parts = [f"{n} {s}" for s, n in sorted(counts.items())]
    if summary.checks:
        passed = sum(1 for c in summary.checks if c.ok and not c.skipped)
        skipped = sum(1 for c in summary.checks if c.skipped)
        parts.append(f"checks: {passed} passed, {len(summary.checks) - passed - skipped} failed, {skipped} cannot run here")
    print(f"\n{mode}: " + (", ".join(parts) if parts else "nothing to do"))
    if mode == "apply" and counts and set(counts) <= {"unchanged", "skipped"}:
        print("apply: nothing changed, every step was already in the desired state")


def cmd_plan(args) -> int:
    return _run(args, "plan", start=args.start, only=args.only)


def cmd_apply(args) -> int:
    if not args.yes:
        if args.json:  # --json is for scripts: stdout carries only the JSON document, never a question
            raise UsageError("apply --json changes hosts without asking: add --yes (review with `hubwizard plan` first)")
        if not sys.stdin.isatty():
            raise UsageError("apply changes hosts: run `hubwizard plan` to review, then `hubwizard apply --yes`")
        code = cmd_plan(argparse.Namespace(**{**vars(args), "json": False, "diff": False}))
        if code not in (0,):
            return code
        if input("\nApply these changes? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing changed")
            return 0
    return _run(args, "apply", start=args.start, only=args.only)


def cmd_verify(args) -> int:
    return _run(args, "verify")


def cmd_status(args) -> int:
    from hubwizard.session import status_table

    session = _open(args)
    rows = status_table(session)
    if args.json:
        print(json.dumps({"command": "status", "site": session.site.site.name, "steps": rows}, indent=2))
        return 0
    for row in rows:
        states = "  ".join(f"{h}:{v['state']}" for h, v in row["hosts"].items())
        print(f"{row['id']:<24} {states}")
    return 0


def cmd_render(args) -> int:
    from pathlib import Path

    from hubwizard.core.render import Facts, render_all

    session = _open(args)
    try:
        written = render_all(session.site, Facts.offline(session.site), Path(args.output))
    except OSError as exc:  # the folder the admin named cannot take the files: bad input, not a bug
        where = exc.filename or args.output
        raise UsageError(f"render: cannot write {where}: {exc.strerror or exc}") from None
    for p in written:
        print(p)
    print(f"render: {len(written)} files written under {args.output}")
    return 0


def cmd_add_node(args) -> int:
    session = _open(args)
    try:
        host = session.site.host(args.host)
    except KeyError:
        raise UsageError(f"add-node: no host named {args.host!r} in {args.config}; add it under [[hosts]] first") from None
    if host.role != "node":
        raise UsageError(f"add-node: host {args.host!r} has role {host.role!r}; only nodes can be added")
    from hubwizard.cli import scale

    return scale.add_node(session, args)


def cmd_teardown(args) -> int:
    from hubwizard.cli import scale

    return scale.teardown(_open(args), args)


def cmd_doctor(args) -> int:
    from hubwizard.doctor import model as doctor

    return doctor.main(_open(args), args)


def cmd_monitor(args) -> int:
    _hub_answers(args)
    from hubwizard.app import run_monitor

    return run_monitor(args)


def _hub_answers(args) -> None:
    """Before the screen opens: can the hub be reached? If not, exit 3 with why and the fix, as
    every command does (a monitor of a hub it cannot see would only show empty panels). An
    unknown host key is left to the screen, which asks about it."""
    from hubwizard.core.errors import HostKeyError, UnreachableError
    from hubwizard.remote.connections import Connections

    session = _open(args)
    hub = session.site.hub_host.name
    conns = Connections(session.site, session.secrets, accept_new_host_keys=args.accept_new_host_keys)
    try:
        conns.get(hub)
    except HostKeyError:
        pass
    except UnreachableError as exc:
        exc.host = hub  # named in --json's error document
        raise
    finally:
        conns.close()


def cmd_wizard(args) -> int:
    from hubwizard.app import run_wizard

    return run_wizard(args)


def cmd_init(args) -> int:
    from hubwizard.cli import init

    return init.main(args)


_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "plan": cmd_plan,
    "apply": cmd_apply,
    "verify": cmd_verify,
    "status": cmd_status,
    "render": cmd_render,
    "add-node": cmd_add_node,
    "teardown": cmd_teardown,
    "doctor": cmd_doctor,
    "monitor": cmd_monitor,
    "wizard": cmd_wizard,
    "init": cmd_init,
    "backup": lambda args: _backup_cli().cmd_backup(args),
    "restore": lambda args: _backup_cli().cmd_restore(args),
}


def _backup_cli():
    from hubwizard.cli import backup

    return backup


if __name__ == "__main__":
    sys.exit(main())
