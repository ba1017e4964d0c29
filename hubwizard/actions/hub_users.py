"""Who may log in and who is admin, changed in the running hub through its REST API.

Why not through the hub image: jupyterhub_config.py lives in the image, so a user list in it
made every added student a new image and a hub restart. The swarm-track hub reads the site
file's lists at start-up from hubwizard-users.json in its data volume (core.render.hub_users_json);
this step writes that file and makes the running hub agree through its API: users created
(POST /hub/api/users/NAME), admin set or cleared (PATCH), users the site file no longer names
deleted (DELETE: JupyterHub stops a running server of theirs first; their files stay). Nothing
restarts, and a later restart reads the same lists: both agree.

The token: hub_users_token (secrets file, made once), a Docker secret of the hub service, for
the hub service "hubwizard-users". JupyterHub lets only an admin grant admin, so that service is
a hub admin; only apply's hub-users step uses it. It reaches the hub over SSH on the hub host
(127.0.0.1:8000, on standard input), never on a command line or the network.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from hubwizard.actions.hub_e2e import E2E_USER
from hubwizard.actions.hub_service import DATA_VOLUME, HUB_PORT, users_token
from hubwizard.actions.swarm import api_call
from hubwizard.core.config import Site
from hubwizard.engine.calls import CallResult, StepContext
from hubwizard.engine.diff import SpecView, spec_view

# The hub API on the hub host, token on stdin: prints the HTTP status, then the body.
_API = (
    "import sys, urllib.request as u, urllib.error as e\n"
    "t = sys.stdin.readline().strip(); m, p = sys.argv[1], sys.argv[2]\n"
    "b = sys.argv[3].encode() if len(sys.argv) > 3 else None\n"
    f"r = u.Request('http://127.0.0.1:{HUB_PORT}/hub/api' + p, data=b, method=m,\n"
    "              headers={'Authorization': 'token ' + t, 'Content-Type': 'application/json'})\n"
    "try:\n"
    "    x = u.urlopen(r, timeout=150); print(x.status); print(x.read().decode())\n"
    "except e.HTTPError as x:\n"
    "    print(x.code); print(x.read().decode()[:500])\n"
)
PAGE = 200  # JupyterHub 5 answers at most this many users per request


@dataclass(frozen=True)
class Wanted:
    """The site file's lists, as the hub file holds them."""

    admins: frozenset[str]
    allowed: frozenset[str]
    allow_all: bool  # the dummy login with no list: anyone logs in, nobody is removed

    @classmethod
    def of(cls, site: Site) -> Wanted:
        from hubwizard.core.render import hub_users_json

        return cls.parse(hub_users_json(site))

    @classmethod
    def parse(cls, text: str) -> Wanted:
        data = json.loads(text or "{}")
        return cls(frozenset(data.get("admin_users", [])), frozenset(data.get("allowed_users", [])),
                   bool(data.get("allow_all")))


@dataclass(frozen=True)
class UserChanges:
    """What the hub API must do so the running hub's users are the site file's."""

    add: tuple[str, ...] = ()
    make_admin: tuple[str, ...] = ()
    drop_admin: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()  # deleted from the hub: a running server of theirs is stopped

    def __bool__(self) -> bool:
        return bool(self.add or self.make_admin or self.drop_admin or self.remove)

    def describe(self) -> str:
        """One line for the plan and the apply report: what happens, and that nothing restarts."""
        parts = [f"add {', '.join(self.add)}"] if self.add else []
        parts += [f"make {', '.join(self.make_admin)} admin"] if self.make_admin else []
        parts += [f"take admin from {', '.join(self.drop_admin)}"] if self.drop_admin else []
        if self.remove:
            parts.append(f"remove {', '.join(self.remove)} (deleted from the hub: a running server of theirs "
                         "is stopped, their files stay)")
        head = "users added" if self.add else "users changed"
        return f"{head} through the hub API, no restart: {'; '.join(parts)}"


def user_changes(wanted: Wanted, hub: dict[str, bool]) -> UserChanges:
    """``hub``: the running hub's users, name -> admin. The check's test user is left alone
    (verify may be using it); with ``allow_all`` nobody is removed (anyone may log in)."""
    listed = wanted.admins | wanted.allowed
    remove = () if wanted.allow_all else tuple(sorted(n for n in hub if n not in listed and n != E2E_USER))
    return UserChanges(
        add=tuple(sorted(listed - hub.keys())),
        make_admin=tuple(sorted(n for n in wanted.admins if not hub.get(n, False))),
        drop_admin=tuple(sorted(n for n, admin in hub.items() if admin and n in listed and n not in wanted.admins)),
        remove=remove,
    )


# --------------------------------------------------------------------------- the hub's side


def _api(ctx: StepContext, token: str, method: str, path: str, body: Any = None) -> tuple[int, str]:
    args = [method, path] + ([json.dumps(body)] if body is not None else [])
    res = ctx.run(f"python3 -c {shlex.quote(_API)} {shlex.join(args)}", sudo=False, stdin=token + "\n", timeout=200)
    status, _, text = res.stdout.partition("\n")
    if not res.ok or not status.strip().isdigit():
        raise HubApiError(f"{method} /hub/api{path} on {ctx.host.name} (127.0.0.1:{HUB_PORT}) did not answer: "
                          f"{res.output[-400:]}")
    return int(status), text


class HubApiError(RuntimeError):
    """The hub's API did not answer or refused; the message names host, request and fix."""


def hub_users(ctx: StepContext, token: str) -> dict[str, bool]:
    """The running hub's users, name -> admin (every page)."""
    found: dict[str, bool] = {}
    while True:
        status, text = _api(ctx, token, "GET", f"/users?limit={PAGE}&offset={len(found)}")
        if status in (401, 403):
            raise HubApiError(f"the hub on {ctx.host.name} refused hubwizard's users token ({status}): it runs a "
                              "config without the hubwizard-users service; run `hubwizard apply --from hub-image`")
        if status != 200:
            raise HubApiError(f"GET /hub/api/users on {ctx.host.name}: {status} {text[:300]}")
        page = json.loads(text)
        found.update({u["name"]: bool(u.get("admin")) for u in page})
        if len(page) < PAGE:
            return found


def _volume_path(ctx: StepContext) -> str:
    """Where the hub's data volume lives on the hub host (made now if the hub never ran)."""
    fmt = shlex.quote("{{.Mountpoint}}")
    res = ctx.run(f"docker volume create {DATA_VOLUME} >/dev/null && docker volume inspect --format {fmt} "
                  f"{DATA_VOLUME}", sudo=True)
    if not res.ok or not res.stdout.strip():
        raise HubApiError(f"docker volume inspect {DATA_VOLUME} on {ctx.host.name} failed: {res.output[-300:]}")
    return res.stdout.strip()


def users_file(ctx: StepContext) -> tuple[str, str]:
    """(path on the hub host, current content or "") of the hub's user lists."""
    from hubwizard.core.render import USERS_FILE

    path = f"{_volume_path(ctx)}/{USERS_FILE}"
    res = ctx.run(f"cat {shlex.quote(path)} 2>/dev/null", sudo=True)
    return path, res.stdout if res.ok else ""


def _allow_all(text: str) -> bool:
    """The running hub's allow-anyone: from the file it started with (no file: False)."""
    return Wanted.parse(text).allow_all if text.strip() else False


def write_users_file(ctx: StepContext) -> Wanted | None:
    """Write the site's lists where the hub reads them at start-up; the lists there before
    (None when there was no file)."""
    from hubwizard.core.render import hub_users_json

    path, current = users_file(ctx)
    wanted = hub_users_json(ctx.site)
    if current != wanted:
        ctx.transport.put(wanted.encode(), path, mode=0o644, sudo=True)
    return Wanted.parse(current) if current.strip() else None


# --------------------------------------------------------------------------- calls


@api_call("hub_users_current")
def hub_users_current(ctx: StepContext) -> CallResult:
    """Check: the hub's user file and the running hub's users are the site file's lists."""
    from hubwizard.core.render import hub_users_json

    token = users_token(ctx, create=False)
    if token is None:
        return CallResult(False, "no hub_users_token in the secrets file yet: the hub-service step makes it")
    try:
        _, current = users_file(ctx)
        wanted = Wanted.of(ctx.site)
        changes = user_changes(wanted, hub_users(ctx, token))
    except HubApiError as exc:
        return CallResult(False, str(exc))
    if _allow_all(current) != wanted.allow_all:
        return CallResult(False, "the dummy login's allow-anyone setting changed: the hub restarts in place to read "
                          "it (users' servers keep running)")
    if changes:
        return CallResult(False, changes.describe())
    if current != hub_users_json(ctx.site):
        return CallResult(False, "the hub's user lists (hubwizard-users.json) differ from the site file; its "
                          "users already agree: the file is rewritten, no restart")
    return CallResult(True, f"the hub's users are the site file's ({len(wanted.allowed)} allowed, "
                      f"{len(wanted.admins)} admins)")


def _apply_changes(ctx: StepContext, token: str, changes: UserChanges) -> None:
    for name in changes.add:
        status, text = _api(ctx, token, "POST", f"/users/{name}")
        if status not in (201, 409):
            raise HubApiError(f"POST /hub/api/users/{name} on {ctx.host.name}: {status} {text[:300]}")
    for name, admin in [(n, True) for n in changes.make_admin] + [(n, False) for n in changes.drop_admin]:
        status, text = _api(ctx, token, "PATCH", f"/users/{name}", {"admin": admin})
        if status != 200:
            raise HubApiError(f"PATCH /hub/api/users/{name} admin={admin} on {ctx.host.name}: {status} {text[:300]}")
    for name in changes.remove:  # JupyterHub stops a running server first; 400 = still stopping
        status, text = _api(ctx, token, "DELETE", f"/users/{name}")
        if status not in (204, 404):
            raise HubApiError(f"DELETE /hub/api/users/{name} on {ctx.host.name}: {status} {text[:300]} "
                              "(a server still stopping? re-run apply in a minute)")


def sync_users(ctx: StepContext, *, quiet: bool = False) -> UserChanges:
    """The running hub's users made the site file's through its API; with ``quiet`` a hub
    that does not answer or does not know the token yet (first install) is left alone."""
    token = users_token(ctx, create=False)
    try:
        if token is None:
            raise HubApiError(f"no hub_users_token for the hub on {ctx.host.name}")
        changes = user_changes(Wanted.of(ctx.site), hub_users(ctx, token))
        _apply_changes(ctx, token, changes)
    except HubApiError:
        if quiet:
            return UserChanges()
        raise
    return changes


def user_lines(admins: frozenset[str] | set[str], names: frozenset[str] | set[str]) -> str:
    """The hub's users one per line, for plan --diff: ``name`` or ``name (admin)``."""
    return "".join(f"{n} (admin)\n" if n in admins else f"{n}\n" for n in sorted(names))


@spec_view("hub_users", "hub users (changed through the hub API, no restart)")
def hub_users_view(ctx: StepContext) -> SpecView:
    """plan --diff: the running hub's users now, and as the site file lists them."""
    token = users_token(ctx, create=False)
    if token is None:
        return SpecView(note="(not shown: no hub_users_token yet; the hub-service step makes it)")
    try:
        now = {n: a for n, a in hub_users(ctx, token).items() if n != E2E_USER}
    except HubApiError as exc:
        return SpecView(note=f"(not shown: {exc})")
    wanted = Wanted.of(ctx.site)
    listed = set(now) if wanted.allow_all else set()
    return SpecView(user_lines({n for n, a in now.items() if a}, set(now)),
                    user_lines(wanted.admins, wanted.admins | wanted.allowed | listed))


@api_call("hub_users")
def hub_users_apply(ctx: StepContext, how: str = "") -> CallResult:
    """Apply: the lists file, then the running hub's users through its API; a restart only when
    the dummy login's allow-anyone setting changed (it cannot change in a running hub).
    ``how``: the recipe's words for the plan, nothing to do here."""
    token = users_token(ctx, create=False)
    if token is None:
        return CallResult(False, "no hub_users_token in the secrets file: run the hub-service step first")
    wanted = Wanted.of(ctx.site)
    try:
        before = write_users_file(ctx)
        notes = []
        if (before.allow_all if before else False) != wanted.allow_all:
            restarted = _restart_hub(ctx)
            if not restarted.ok:
                return restarted
            notes.append(restarted.message)
        changes = sync_users(ctx)
    except HubApiError as exc:
        return CallResult(False, str(exc))
    if changes:
        notes.append(changes.describe())
    return CallResult(True, "; ".join(notes) or "the hub's user lists file rewritten; its users already agreed",
                      changed=True)


def _restart_hub(ctx: StepContext) -> CallResult:
    """The hub re-reads its lists: the service's task replaced in place (cleanup_servers = False)."""
    from hubwizard.actions.hub_service import _update_finished, hub_service_running
    from hubwizard.core.render import HUB_SERVICE

    res = ctx.run(f"docker service update --detach --force {HUB_SERVICE}", sudo=True)
    if not res.ok:
        return CallResult(False, f"docker service update --force {HUB_SERVICE} on {ctx.host.name}: {res.output[-300:]}")
    state = _update_finished(ctx)
    running = hub_service_running(ctx) if state == "completed" else CallResult(False, f"update ended {state}")
    if not running.ok:
        return CallResult(False, f"the hub did not come back after a restart to read its user lists: {running.message}")
    return CallResult(True, "the hub restarted in place to read its user lists (users' servers keep running)")
