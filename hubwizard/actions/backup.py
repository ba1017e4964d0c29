"""Backups of the users' storage and the hub's database with restic, and their restore.

Why restic: encrypted, incremental and deduplicated, speaks SFTP and S3, is packaged by
Debian (0.14), and `restic check` proves a repository readable. hubwizard writes a wrapper
(hubwizard-restic) that reads the repository, the password *file* and any S3 key from a
root-only env file, so the password never appears in a command line, a unit file, the
journal or plan output. A systemd timer runs hubwizard-backup nightly on the storage host
(the users' storage) and, when the hub is another host, on the hub too (its database volume):
each host backs up what it holds, into the same repository, under its own site host name
(`restic --host NAME`), and writes a small world-readable status file after each run that the
monitor reads instead of asking restic on every refresh. Classic sites back up /home on the hub.

The calls here are the recipe's (160-backups.yaml); the functions below them are what
`hubwizard backup now` and `hubwizard restore` run, over the same connections.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hubwizard.actions.hub_service import DATA_VOLUME
from hubwizard.core.config import Host, Site
from hubwizard.core.errors import HubwizardError
from hubwizard.core.secrets import made_once
from hubwizard.engine.calls import CallResult, StepContext, register
from hubwizard.remote.transport import Transport

CONF_DIR = "/etc/hubwizard"
ENV_FILE = f"{CONF_DIR}/restic.env"  # 0600: repository, password file, S3 key
PASSWORD_FILE = f"{CONF_DIR}/restic.password"  # 0600: the repository password alone
SSH_KEY = f"{CONF_DIR}/backup_ssh_key"  # the storage host's key for an sftp target
KNOWN_HOSTS = f"{CONF_DIR}/backup_known_hosts"
CACHE_DIR = "/var/cache/hubwizard-restic"
STAGE = "/var/lib/hubwizard/backup/hub-db"  # the consistent copy of the hub's database (backup script)
RESTIC = "/usr/local/sbin/hubwizard-restic"
SERVICE = "hubwizard-backup.service"
TAG = "hubwizard"
DB_FILE = "jupyterhub.sqlite"
VOLUME = DATA_VOLUME  # the hub's data volume (hub_service): its database and cookie secret
STATUS = "/var/lib/hubwizard/backup-status.json"  # 0644, no secret: the last run, for the monitor
CLASSIC_HUB = "jupyterhub"  # the classic track's hub container (classic_hub)
CLASSIC_HOMES = "/home"  # the classic track's users' folders, exported from the hub (classic-nfs-home)


class BackupError(HubwizardError):
    """A backup or restore could not be done; the message names the host, the command and the fix."""

    title = "backup failed"


# ------------------------------------------------------------------ pure logic (unit-tested)


def storage_host(site: Site) -> Host:
    """Where the users' folders are: the classic track exports /home from the hub, swarm-mode
    serves storage.path from the NFS host (storage.server, else the hub)."""
    return backup_hosts(site)[0]


def storage_path(site: Site) -> str:
    """The users' folders the backups hold: /home on classic sites, storage.path otherwise."""
    return CLASSIC_HOMES if site.site.track == "classic" else site.storage.path


def backup_hosts(site: Site) -> list[Host]:
    """The hosts that run a backup: the storage host first (it creates the repository and prunes),
    then the hub when it is another host (its database volume is on its own disk)."""
    return site.targets("backup")  # the recipe's `targets: backup`


def env_text(site: Site, s3_secret: str | None) -> str:
    """restic.env: what hubwizard-restic exports. No password here: restic reads PASSWORD_FILE."""
    b = site.backups
    lines = {
        "RESTIC_REPOSITORY": b.target or "",
        "RESTIC_PASSWORD_FILE": PASSWORD_FILE,
        "RESTIC_CACHE_DIR": CACHE_DIR,
    }
    if b.sftp:
        user, host, _path = b.sftp
        lines["HUBWIZARD_SFTP_COMMAND"] = (f"ssh -i {SSH_KEY} -o UserKnownHostsFile={KNOWN_HOSTS} "
                                           f"-o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=15 "
                                           f"-p {b.ssh_port} {user}@{host} -s sftp")
    if b.s3_access_key_id:
        lines["AWS_ACCESS_KEY_ID"] = b.s3_access_key_id
        lines["AWS_SECRET_ACCESS_KEY"] = s3_secret or ""
    head = "# Written by hubwizard (backups step); root only. Change the site file, then `hubwizard apply`.\n"
    return head + "".join(f"{k}={shlex.quote(v)}\n" for k, v in lines.items())


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def target_host(site: Site) -> str | None:
    """The site host an sftp target names (by name, address or internal address), if any."""
    if not site.backups.sftp:
        return None
    _user, host, _path = site.backups.sftp
    for h in site.hosts:
        if host in (h.name, h.address, h.internal_address):
            return h.name
    return None


def known_hosts_line(host: str, port: int, pubkey: str) -> str:
    """One known_hosts line: ``[host]:port`` when the port is not 22, as ssh looks it up."""
    who = host if port == 22 else f"[{host}]:{port}"
    kind, blob = pubkey.split()[:2]
    return f"{who} {kind} {blob}\n"


def failure_message(site: Site, host: str, output: str) -> tuple[str, str]:
    """(what went wrong, the fix) for restic's output against the site's target."""
    b = site.backups
    tail = " | ".join(line.strip() for line in output.strip().splitlines()[-3:]) or "(no output)"
    low = output.lower()
    if "wrong password" in low:
        return (f"the repository at {b.target} opens with another password ({tail})",
                "backup_password in the site's secrets file must be the one the repository was created with")
    if b.sftp:
        user, thost, _path = b.sftp
        if "permission denied" in low and "publickey" in low:
            return (f"backup target {b.target}: {thost} refuses {host}'s backup key ({tail})",
                    f"add {SSH_KEY}.pub of {host} to ~{user}/.ssh/authorized_keys on {thost} "
                    "(apply does it when the target is a host of the site)")
        if "host key verification failed" in low:
            return (f"backup target {b.target}: the host key of {thost} is not the one recorded ({tail})",
                    f"if {thost} was reinstalled, remove its line from {KNOWN_HOSTS} on {host} and run apply")
        unreachable = ("connection refused", "no route to host", "timed out", "could not resolve",
                       "connection closed", "unable to start the sftp session", "network is unreachable")
        if any(word in low for word in unreachable):
            return (f"backup target {b.target} cannot be reached from {host} ({tail})",
                    f"check that {thost} is up and accepts SSH on port {b.ssh_port} from {host} "
                    f"(on {host}: ssh -i {SSH_KEY} -p {b.ssh_port} {user}@{thost} true), or change [backups] target")
    if "is there a repository at the following location" in low or "does not exist" in low:
        return (f"no restic repository at {b.target} yet ({tail})", "run `hubwizard apply --only backups` to create it")
    if b.target and b.target.startswith("s3:"):
        return (f"backup target {b.target} cannot be read from {host} ({tail})",
                "check the bucket's URL, that it exists, s3_access_key_id and backup_s3_secret_key, and that "
                f"{host} reaches the S3 endpoint")
    return (f"restic failed on {host} against {b.target} ({tail})",
            f"run `{RESTIC} snapshots` on {host} to see restic's full message")


@dataclass(frozen=True)
class Snapshot:
    id: str
    time: datetime
    paths: tuple[str, ...]

    @property
    def short(self) -> str:
        return self.id[:8]

    @property
    def when(self) -> str:
        return self.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def parse_snapshots(text: str) -> list[Snapshot]:
    """`restic snapshots --json` -> snapshots, oldest first."""
    out = []
    for raw in json.loads(text or "[]") or []:
        out.append(Snapshot(raw["id"], parse_time(raw["time"]), tuple(raw.get("paths") or ())))
    return sorted(out, key=lambda s: s.time)


def parse_time(text: str) -> datetime:
    """restic's RFC 3339 times (nanoseconds, offsets) and the admin's --at (``2026-12-01``,
    ``2026-12-01 22:00``, ISO with or without zone; no zone means UTC)."""
    value = text.strip().replace("Z", "+00:00")
    m = re.fullmatch(r"(.*T?\d\d:\d\d:\d\d)\.(\d+)(.*)", value)
    if m:  # Python reads microseconds (6 digits) at most
        value = f"{m.group(1)}.{m.group(2)[:6].ljust(6, '0')}{m.group(3)}"
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use e.g. 2026-12-01 or '2026-12-01 22:00', UTC)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def pick_snapshot(snapshots: list[Snapshot], at: datetime | None) -> Snapshot | None:
    """The newest snapshot taken at or before ``at`` (the newest of all without ``at``)."""
    eligible = [s for s in snapshots if at is None or s.time <= at]
    return eligible[-1] if eligible else None


def age_problem(snapshots: list[Snapshot], now: datetime, max_age_hours: int) -> str | None:
    """Why the backups are not fresh enough; None when the newest is young enough."""
    if not snapshots:
        return "no backup has been made yet: run `hubwizard backup now` (the timer's first run is tonight)"
    newest = snapshots[-1]
    age = now - newest.time
    if age > timedelta(hours=max_age_hours):
        hours = int(age.total_seconds() // 3600)
        return (f"the newest backup ({newest.short}, {newest.when}) is {hours} h old, more than "
                f"[backups] max_age_hours = {max_age_hours}: see `journalctl -u {SERVICE}` on the storage host")
    return None


@dataclass(frozen=True)
class RunStatus:
    """The last run of hubwizard-backup on one host, as its status file says (STATUS)."""

    host: str
    time: datetime
    ok: bool
    exit: int
    stage: str  # where it stopped: nothing | backup | forget | check | done
    snapshot: str = ""
    bytes: int | None = None  # the snapshot's size (restic's total_bytes_processed)
    added: int | None = None  # new data the run stored
    checked: str = ""  # ok | failed: `restic check` after the run (the storage host); "" not run here


def parse_status(text: str) -> RunStatus | None:
    """The status file's text; None when it is empty (the backup never ran on that host).
    Raises ValueError when it is not the file the backup script writes."""
    if not text.strip():
        return None
    raw = json.loads(text)
    if not isinstance(raw, dict) or "time" not in raw:
        raise ValueError("not a hubwizard backup status")
    return RunStatus(str(raw.get("host", "")), parse_time(str(raw["time"])), bool(raw.get("ok")),
                     int(raw.get("exit") or 0), str(raw.get("stage", "")), str(raw.get("snapshot") or ""),
                     _count(raw.get("bytes")), _count(raw.get("added")), str(raw.get("checked") or ""))


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ------------------------------------------------------------------ the recipe's calls


def _password(ctx: StepContext, *, create: bool) -> str | None:
    """The repository password from the secrets store; generated once (and saved there) by apply."""
    import secrets as pysecrets

    return made_once(ctx.secrets, "backup_password", lambda: pysecrets.token_urlsafe(32), create=create)


def _remote_digest(t: Transport, path: str) -> str | None:
    res = t.run(f"sha256sum {shlex.quote(path)}", sudo=True)
    return res.stdout.split()[0] if res.ok and res.stdout.split() else None


# what the storage host runs: (asset, path, mode)
FILES = (
    ("backup/hubwizard-restic.sh.j2", RESTIC, 0o755),
    ("backup/hubwizard-backup.sh.j2", "/usr/local/sbin/hubwizard-backup", 0o755),
    ("backup/hubwizard-backup.service.j2", f"/etc/systemd/system/{SERVICE}", 0o644),
    ("backup/hubwizard-backup.timer.j2", "/etc/systemd/system/hubwizard-backup.timer", 0o644),
)


def rendered_files(context: dict, host: str | None = None) -> list[tuple[str, str, int]]:
    """(path, text, mode) of the wrapper, the backup script and the units for one backup host
    (default: the storage host): no secret in any. Only the storage host backs up the users'
    folders and prunes the repository (forget applies the keep policy to every host's backups)."""
    from hubwizard.core.templating import render_asset

    site: Site = context["cfg"]
    name = host or storage_host(site).name
    on_storage = name == storage_host(site).name
    extra = {**context, "volume": VOLUME, "stage": STAGE, "db_file": DB_FILE, "status_file": STATUS,
             "backup_host": name, "storage": storage_path(site) if on_storage else "", "prune": on_storage,
             "hub_here": name == site.hub_host.name}
    return [(path, render_asset(asset, extra), mode) for asset, path, mode in FILES]


@register("backup_files")
def backup_files(ctx: StepContext) -> CallResult:
    """The wrapper, the backup script, the service and the timer, as the site renders them."""
    files = rendered_files(ctx.template_context, ctx.host.name)
    stale = [path for path, text, _mode in files if _remote_digest(ctx.transport, path) != digest(text)]
    if not stale:
        return CallResult(True, "backup script, wrapper and units as the site says")
    if ctx.phase != "apply":
        return CallResult(False, f"not as the site says: {', '.join(stale)}")
    for path, text, mode in files:
        if path in stale:
            ctx.transport.put(text.encode(), path, mode=mode, sudo=True)
    return CallResult(True, f"wrote {', '.join(stale)}", changed=True)


@register("backup_credentials")
def backup_credentials(ctx: StepContext) -> CallResult:
    """The password file and restic.env on the storage host, root only (0600 in a 0700 folder)."""
    create = ctx.phase == "apply"
    password = _password(ctx, create=create)
    if password is None:
        return CallResult(False, "no backup_password in the secrets store yet (apply makes one)")
    s3_secret = None
    if ctx.site.backups.s3_access_key_id:
        s3_secret = ctx.secrets.get("backup_s3_secret_key")
    env = env_text(ctx.site, s3_secret)
    wanted = {PASSWORD_FILE: password + "\n", ENV_FILE: env}
    stale = [p for p, text in wanted.items() if _remote_digest(ctx.transport, p) != digest(text)]
    modes = ctx.run(f"stat -c %a {shlex.quote(CONF_DIR)} {shlex.quote(PASSWORD_FILE)} {shlex.quote(ENV_FILE)}")
    private = modes.ok and modes.stdout.split() == ["700", "600", "600"]
    if not stale and private:
        return CallResult(True, f"{PASSWORD_FILE} and {ENV_FILE} in place, root only")
    if not create:
        return CallResult(False, f"{', '.join(stale) or CONF_DIR} not as the site says (or not root only)")
    ctx.run(f"install -d -m 0700 -o root -g root {shlex.quote(CONF_DIR)}")
    for path, text in wanted.items():
        ctx.transport.put(text.encode(), path, mode=0o600, sudo=True)
    ctx.run(f"chmod 0600 {shlex.quote(PASSWORD_FILE)} {shlex.quote(ENV_FILE)}")
    return CallResult(True, f"wrote {PASSWORD_FILE} and {ENV_FILE} (0600); keep backup_password in the secrets "
                            "file: without it the backups cannot be read", changed=True)


@register("backup_ssh_access")
def backup_ssh_access(ctx: StepContext) -> CallResult:
    """An sftp target: the storage host's own key, the target's host key, and (when the target
    is a host of the site) the key authorized there for SFTP only."""
    b = ctx.site.backups
    if not b.sftp:
        return CallResult(True, "an S3 target: no SSH key needed", skipped=True)
    user, thost, _path = b.sftp
    create = ctx.phase == "apply"
    have_key = ctx.run(f"test -s {shlex.quote(SSH_KEY)}.pub").ok
    have_known = ctx.run(f"test -s {shlex.quote(KNOWN_HOSTS)}").ok
    if not create:
        if have_key and have_known:
            return CallResult(True, f"{SSH_KEY} and {KNOWN_HOSTS} in place")
        return CallResult(False, f"no backup SSH key or known host for {thost} on {ctx.host.name} yet")
    notes = []
    if not have_key:
        res = ctx.run(f"install -d -m 0700 {CONF_DIR} && ssh-keygen -q -t ed25519 -N '' -C "
                      f"{shlex.quote('hubwizard-backup@' + ctx.host.name)} -f {shlex.quote(SSH_KEY)}")
        if not res.ok:
            return CallResult(False, f"ssh-keygen failed on {ctx.host.name}: {res.output.strip()[-300:]}")
        notes.append(f"made {SSH_KEY}")
    pub = ctx.run(f"cat {shlex.quote(SSH_KEY)}.pub").stdout.strip()
    site_host = target_host(ctx.site)
    if site_host is None:
        return _outside_target(ctx, pub, have_known, notes)
    target = ctx.reach(site_host)
    notes.append(_authorize(target, user, pub, site_host))
    keys = target.run("cat /etc/ssh/ssh_host_ed25519_key.pub", sudo=True)
    if not keys.ok or not keys.stdout.strip():
        return CallResult(False, f"cannot read {site_host}'s SSH host key (/etc/ssh/ssh_host_ed25519_key.pub)")
    ctx.transport.put(known_hosts_line(thost, b.ssh_port, keys.stdout.strip()).encode(), KNOWN_HOSTS,
                      mode=0o600, sudo=True)
    notes.append(f"{KNOWN_HOSTS}: {site_host}'s host key, read over hubwizard's own checked connection")
    return CallResult(True, "; ".join(notes), changed=True)


def _authorize(target: Transport, user: str, pub: str, name: str) -> str:
    """Append the key to USER's authorized_keys on the target, limited to SFTP (restrict + forced sftp-server)."""
    sftp = ("s=$(sshd -T 2>/dev/null | awk '$1==\"subsystem\" && $2==\"sftp\" {print $3}'); "
            "case $s in /*) ;; *) s=/usr/lib/openssh/sftp-server ;; esac; echo $s")
    server = target.run(sftp, sudo=True).stdout.strip() or "/usr/lib/openssh/sftp-server"
    line = f'restrict,command="{server}" {pub}'
    home = f"$(getent passwd {shlex.quote(user)} | cut -d: -f6)"
    script = (f"h={home}; [ -n \"$h\" ] || {{ echo 'no user {user}' >&2; exit 1; }}; "
              f"install -d -m 0700 -o {shlex.quote(user)} \"$h/.ssh\" && touch \"$h/.ssh/authorized_keys\" && "
              f"chown {shlex.quote(user)} \"$h/.ssh/authorized_keys\" && chmod 0600 \"$h/.ssh/authorized_keys\" && "
              f"{{ grep -qxF {shlex.quote(line)} \"$h/.ssh/authorized_keys\" || "
              f"echo {shlex.quote(line)} >> \"$h/.ssh/authorized_keys\"; }}")
    res = target.run(script, sudo=True)
    if not res.ok:
        raise BackupError(f"could not authorize the backup key for {user} on {name}: {res.output.strip()[-300:]}",
                          fix=f"check that user {user} exists on {name}, or name another in [backups] target")
    return f"backup key authorized on {name} for {user}, SFTP only"


def _outside_target(ctx: StepContext, pub: str, have_known: bool, notes: list[str]) -> CallResult:
    """A target outside the site: its host key is trusted on first use and said; the key is the admin's to add."""
    user, thost, _path = ctx.site.backups.sftp or ("", "", "")
    port = ctx.site.backups.ssh_port
    if not have_known:
        res = ctx.run(f"ssh-keyscan -t ed25519 -p {port} {shlex.quote(thost)} 2>/dev/null > {KNOWN_HOSTS}.new && "
                      f"test -s {KNOWN_HOSTS}.new && mv {KNOWN_HOSTS}.new {KNOWN_HOSTS} && chmod 0600 {KNOWN_HOSTS} && "
                      f"ssh-keygen -l -f {KNOWN_HOSTS}")
        if not res.ok:
            return CallResult(False, f"backup target {thost}:{port} does not answer SSH from {ctx.host.name}: check "
                                     "that it is up and its port is open, or change [backups] target")
        notes.append(f"trusted {thost}'s host key on first use: {res.stdout.strip()} (compare it with the target's own)")
    notes.append(f"add this key to ~{user}/.ssh/authorized_keys on {thost} (it is not a host of the site): {pub}")
    return CallResult(True, "; ".join(notes), changed=True)


def _restic(t: Transport, args: str, timeout: float | None = None):
    """restic through the wrapper. Reads pass --no-lock: the backup hosts' verify runs side by
    side, and a reader's lock would make the storage host's `restic check` (exclusive) fail."""
    return t.run(f"{RESTIC} {args}", sudo=True, timeout=timeout)


def _check(t: Transport, tries: int = 6, pause: float = 20.0):
    """`restic check` (it locks the repository alone), again while another run holds a lock
    (the hub's nightly backup, an admin's restore) rather than failing verify for it."""
    import time

    for attempt in range(tries):
        res = _restic(t, "check", timeout=1800)
        if res.ok or "already locked" not in res.output or attempt == tries - 1:
            return res
        time.sleep(pause)
    return res


def _snapshots(t: Transport, host: str | None = None) -> list[Snapshot]:
    """The site's snapshots; ``host``: only those one host of the site made (restic --host)."""
    only = f" --host {shlex.quote(host)}" if host else ""
    res = _restic(t, f"--no-lock snapshots --json --tag {TAG}{only}", timeout=300)
    if not res.ok:
        raise RuntimeError(res.output)
    return parse_snapshots(res.stdout)


@register("backup_repository")
def backup_repository(ctx: StepContext) -> CallResult:
    """check: the repository opens and holds a backup; apply: init it and make the first backup;
    verify: `restic check`, and the newest backup is younger than max_age_hours."""
    site = ctx.site
    opened = _restic(ctx.transport, "--no-lock cat config", timeout=120)
    if not opened.ok:
        missing = "is there a repository" in opened.output.lower() or "does not exist" in opened.output.lower()
        if ctx.phase == "apply" and missing:
            init = ctx.run(f"{RESTIC} init", timeout=600)
            if not init.ok:
                return CallResult(False, "; fix: ".join(failure_message(site, ctx.host.name, init.output)))
        else:
            return CallResult(False, "; fix: ".join(failure_message(site, ctx.host.name, opened.output)))
    try:
        snaps = _snapshots(ctx.transport, ctx.host.name)
    except RuntimeError as exc:
        return CallResult(False, "; fix: ".join(failure_message(site, ctx.host.name, str(exc))))
    if ctx.phase == "apply" and not snaps:
        done = ctx.run(f"systemctl start {SERVICE}", timeout=site.ssh.command_timeout)
        if not done.ok:
            tail = ctx.run(f"journalctl -u {SERVICE} -n 15 --no-pager").stdout
            return CallResult(False, f"the first backup failed on {ctx.host.name} (systemctl start {SERVICE}): "
                                     f"{tail.strip()[-600:]}")
        return CallResult(True, f"repository {site.backups.target} created, first backup made", changed=True)
    checked_here = ctx.host.name == storage_host(site).name  # one check of the one repository
    if ctx.phase == "verify" and checked_here:
        checked = _check(ctx.transport)
        if not checked.ok:
            what, fix = failure_message(site, ctx.host.name, checked.output)
            return CallResult(False, f"restic check: {what}; fix: {fix}")
    problem = age_problem(snaps, datetime.now(UTC), site.backups.max_age_hours)
    if problem:
        return CallResult(False, problem)
    newest = snaps[-1]
    elsewhere = "" if checked_here or ctx.phase != "verify" else f" (restic check runs on {storage_host(site).name})"
    return CallResult(True, f"{len(snaps)} backup(s) of {ctx.host.name} at {site.backups.target}; "
                            f"newest {newest.short} at {newest.when}{elsewhere}")


# ------------------------------------------------------------------ backup now / restore


def run_backup(t: Transport, site: Site, host: str) -> Snapshot:
    """The timer's own job, now (systemctl start waits for a oneshot to finish)."""
    res = t.run(f"systemctl start {SERVICE}", sudo=True, timeout=site.ssh.command_timeout)
    if not res.ok:
        log = t.run(f"journalctl -u {SERVICE} -n 15 --no-pager", sudo=True).stdout.strip()
        what, fix = failure_message(site, host, log or res.output)
        raise BackupError(f"{host}: systemctl start {SERVICE} failed: {what}", fix=fix)
    snaps = _list(t, site, host)
    if not snaps:
        raise BackupError(f"{host}: the backup ran but {site.backups.target} lists no snapshot", fix=f"journalctl -u {SERVICE}")
    return snaps[-1]


def _list(t: Transport, site: Site, host: str) -> list[Snapshot]:
    """The snapshots ``host`` made (each backup host has its own, under its site name)."""
    try:
        return _snapshots(t, host)
    except RuntimeError as exc:
        what, fix = failure_message(site, host, str(exc))
        raise BackupError(f"{host}: {RESTIC} snapshots: {what}", fix=fix) from None


def _choose(t: Transport, site: Site, host: str, at: datetime | None) -> Snapshot:
    snaps = _list(t, site, host)
    snap = pick_snapshot(snaps, at)
    if snap is None:
        when = f" at or before {at.isoformat()}" if at else ""
        oldest = f" (the oldest is {snaps[0].when})" if snaps else ""
        raise BackupError(f"no backup{when} at {site.backups.target}{oldest}",
                          fix="run `hubwizard backup now`, or give a later --at")
    return snap


def _holds(t: Transport, snap: Snapshot, path: str) -> bool:
    res = _restic(t, f"--no-lock ls --json {snap.id} {shlex.quote(path)}", timeout=600)
    return res.ok and any('"struct_type":"node"' in line.replace(" ", "") for line in res.stdout.splitlines())


def restore_user(t: Transport, site: Site, host: str, user: str, at: datetime | None) -> tuple[Snapshot, str]:
    """The user's folder back from the chosen snapshot, in place; nothing else is written."""
    snap = _choose(t, site, host, at)
    folder = f"{storage_path(site).rstrip('/')}/{user}"
    if not _holds(t, snap, folder):
        raise BackupError(f"backup {snap.short} ({snap.when}) holds no folder {folder}",
                          fix=f"check the user name, or list it on {host}: {RESTIC} ls {snap.short} {storage_path(site)}")
    res = _restic(t, f"restore {snap.id} --target / --include {shlex.quote(folder)}", timeout=site.ssh.command_timeout)
    if not res.ok:
        what, fix = failure_message(site, host, res.output)
        raise BackupError(f"{host}: {RESTIC} restore {snap.short} --include {folder}: {what}", fix=fix)
    return snap, folder


def _hub_runner(t: Transport, site: Site) -> tuple[str, str, str] | None:
    """(what, stop command, start command) of the hub: the swarm service, or the classic track's
    container; None when it does not run (nothing to stop)."""
    from hubwizard.core.render import HUB_SERVICE

    if site.site.track == "classic":
        if not t.run(f"docker container inspect --format '{{{{.Id}}}}' {CLASSIC_HUB}", sudo=True).ok:
            return None
        return (f"docker stop {CLASSIC_HUB}", f"docker stop {CLASSIC_HUB}", f"docker start {CLASSIC_HUB}")
    if not t.run(f"docker service inspect --format '{{{{.ID}}}}' {HUB_SERVICE}", sudo=True).ok:
        return None
    return (f"docker service scale {HUB_SERVICE}=0", f"docker service scale --detach=false {HUB_SERVICE}=0",
            f"docker service scale --detach=false {HUB_SERVICE}=1")


def restore_hub(t: Transport, site: Site, host: str, at: datetime | None, say=print) -> Snapshot:
    """The hub's database back, on the hub host: stop the hub, put the backed-up copy in its
    volume, start it."""
    snap = _choose(t, site, host, at)
    if not _holds(t, snap, f"{STAGE}/{DB_FILE}"):
        raise BackupError(f"backup {snap.short} ({snap.when}) of {host} holds no hub database ({STAGE}/{DB_FILE})",
                          fix="the hub's volume did not exist yet when it ran; pick a later --at")
    fmt = shlex.quote("{{.Mountpoint}}")
    mount = t.run(f"docker volume inspect --format {fmt} {VOLUME}", sudo=True)
    if not mount.ok or not mount.stdout.strip().startswith("/"):
        raise BackupError(f"{host}: docker volume {VOLUME} does not exist: {mount.output.strip()[-200:]}",
                          fix="run `hubwizard apply` (hub-service makes it), then restore --hub again")
    data = mount.stdout.strip()
    hub = _hub_runner(t, site)
    work = f"/var/lib/hubwizard/backup/restore-{snap.short}"
    if hub:
        say(f"{host}: stopping the hub ({hub[0]})")
        _must(t, hub[1], host, 600)
    try:
        say(f"{host}: restoring {DB_FILE} from backup {snap.short} ({snap.when}) into volume {VOLUME}")
        _must(t, f"rm -rf {work} && {RESTIC} restore {snap.id} --target {work} --include {STAGE}/{DB_FILE}", host, 1800)
        _must(t, f"cp {work}{STAGE}/{DB_FILE} {data}/{DB_FILE}.restored && "
                 f"mv {data}/{DB_FILE}.restored {data}/{DB_FILE} && "
                 f"rm -f {data}/{DB_FILE}-journal {data}/{DB_FILE}-wal {data}/{DB_FILE}-shm && rm -rf {work}", host, 600)
    finally:
        if hub:
            say(f"{host}: starting the hub ({hub[2]})")
            _must(t, hub[2], host, 600)
    return snap


def _must(t: Transport, command: str, host: str, timeout: float) -> None:
    res = t.run(command, sudo=True, timeout=timeout)
    if not res.ok:
        raise BackupError(f"{host}: `{command}` failed: {res.output.strip()[-400:]}",
                          fix="see the output above; the backup itself is untouched, run the restore again")
