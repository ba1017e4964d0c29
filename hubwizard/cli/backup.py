"""`hubwizard backup now`, `hubwizard restore --user NAME [--at TIME]` and `restore --hub`.

Why commands of their own and not steps: a restore is a one-off act on the admin's word,
never part of converging a site. They run where the backups step put the timers (a user's
folder on the storage host, the database on the hub; the same host unless storage.server
names another), over the same checked SSH connections as apply; restic itself runs there through
the hubwizard-restic wrapper, so the repository password never leaves that host's root-only file.
Only argparse is imported at start (the CLI's `--help` stays instant).
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from hubwizard.core.errors import UsageError


def register(sub: Any, site_arg: Any, conn_args: Any) -> None:
    """The two commands' parsers, beside the others of main.build_parser."""
    p = sub.add_parser("backup", help="backups of the users' storage and the hub database ([backups])")
    p.add_argument("action", choices=["now"], help="now: run the nightly backup at once and wait for it")
    site_arg(p)
    conn_args(p)
    p = sub.add_parser("restore", help="a user's folder (--user) or the hub database (--hub) back from a backup")
    site_arg(p)
    conn_args(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--user", metavar="NAME", help="restore only this user's folder; others are untouched")
    which.add_argument("--hub", action="store_true", help="restore the hub's database (the hub is stopped meanwhile)")
    p.add_argument("--at", metavar="TIME", help="the newest backup at or before TIME (e.g. 2026-12-01 or "
                                                "'2026-12-01 22:00', UTC); default: the newest")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before restoring")


def _session(args: argparse.Namespace) -> Any:
    from hubwizard.session import open_site

    session = open_site(args.config, recipes_dir=args.recipes)
    if not session.site.backups.enabled:
        raise UsageError(f"{args.config}: [backups] is not enabled; set enabled = true and target = ..., "
                         "then `hubwizard apply --only backups`")
    return session


def _open(session: Any, args: argparse.Namespace, host: str) -> tuple[Any, Any]:
    """(connections, transport) of one backup host, over the same checked SSH as apply."""
    from hubwizard.remote.connections import Connections

    conns = Connections(session.site, session.secrets, accept_new_host_keys=args.accept_new_host_keys)
    try:
        return conns, conns.get(host)
    except Exception as exc:
        conns.close()
        if hasattr(exc, "host"):
            exc.host = host
        raise


def cmd_backup(args: argparse.Namespace) -> int:
    """The nightly job now, on every backup host (the storage host, then the hub if it is another)."""
    from hubwizard.actions import backup

    session = _session(args)
    for h in backup.backup_hosts(session.site):
        conns, t = _open(session, args, h.name)
        try:
            print(f"{h.name}: running the nightly backup now (systemctl start {backup.SERVICE}) "
                  f"to {session.site.backups.target}")
            snap = backup.run_backup(t, session.site, h.name)
        finally:
            conns.close()
        print(f"backup {snap.short} made at {snap.when} on {h.name}")
    return 0


def _at(text: str | None) -> Any:
    if text is None:
        return None
    from hubwizard.actions.backup import parse_time

    try:
        return parse_time(text)
    except ValueError as exc:
        raise UsageError(f"--at: {exc}") from None


def cmd_restore(args: argparse.Namespace) -> int:
    from hubwizard.actions import backup

    if args.user is not None and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", args.user):
        raise UsageError(f"--user {args.user!r}: not a user name (lowercase letters, digits, '_' and '-')")
    at = _at(args.at)
    session = _session(args)
    site = session.site
    # a user's folder is on the storage host, the database on the hub: each from its own backups
    host = backup.storage_host(site).name if args.user else site.hub_host.name
    what = f"{backup.storage_path(site)}/{args.user}" if args.user else "the hub database (the hub stops meanwhile)"
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"restore overwrites {what} on {host}: run again with --yes")
        if input(f"Overwrite {what} on {host} from a backup? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing changed")
            return 0
    conns, t = _open(session, args, host)
    try:
        if args.user:
            snap, folder = backup.restore_user(t, site, host, args.user, at)
            print(f"restored {folder} on {host} from backup {snap.short} ({snap.when}); other users' folders untouched")
        else:
            snap = backup.restore_hub(t, site, host, at)
            print(f"restored the hub database on {host} from backup {snap.short} ({snap.when}); the hub is running again")
    finally:
        conns.close()
    return 0
