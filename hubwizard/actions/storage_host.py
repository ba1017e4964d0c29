"""A dedicated NFS host (storage.server is not the hub): how the hub makes users' folders there.

The problem: before each spawn the hub's pre_spawn_hook makes STORAGE/USER, owned by jovyan,
and sets its quota. With the storage on the hub it does so on its own disk. On another host
the hub cannot: the export squashes every client to jovyan (all_squash, no client is root on
the share), so a mkdir through NFS in the root-owned STORAGE is refused, and xfs_quota only
runs where the filesystem is.

Chosen: SSH from the hub host to the NFS host, with a key that can run one command only.
  - On the NFS host: a system user hubwizard-folders whose authorized_keys entry is
    `restrict,from="HUB_IP",command="hubwizard-user-folder-ssh"`: no shell, no forwarding, no
    pty, only from the hub's address. The forced command accepts one word (a folder name
    matching the hub's SAFE_NAME, or `check`) and runs, through a sudoers rule naming that one
    program, the root helper hubwizard-user-folder: it makes STORAGE/NAME (jovyan, 0755) if
    missing, refuses a symlink, and sets the quota with hubwizard-set-quota when quotas are on.
  - On the hub host: the private key and a known_hosts pinning the NFS host's host keys, both
    root-only in /etc/hubwizard/storage-host. The host keys are read over hubwizard's own
    (host-key-checked) connection to the NFS host, never trusted on first use.
  - The hub (a container) runs the ssh client of the hub host through the short-lived helper
    container it already uses for quotas (docker.sock, nsenter into the host's mount and
    network namespaces): the key never enters the hub image or its service spec, and the hub
    gains nothing it did not have (docker.sock is root on the hub host already).
Why not the alternatives: mounting the export root into the hub needs no_root_squash for the
hub (root over NFS, for anyone who reaches the hub's address) and cannot set quotas; a helper
daemon listening on the NFS host would be one more authenticated service to build and guard,
where sshd already is one. Nothing new listens anywhere.

Compromise of the hub lets an attacker make empty jovyan folders under STORAGE and (re)apply
the site's default quota to them: nothing else on the NFS host.
"""

from __future__ import annotations

import shlex

from hubwizard.core.config import Host, Site
from hubwizard.engine.calls import CallResult, StepContext, register
from hubwizard.remote.transport import Transport

HELPER_USER = "hubwizard-folders"
HELPER_HOME = "/var/lib/hubwizard-folders"
HELPER = "/usr/local/sbin/hubwizard-user-folder"  # root, through sudo
FORCED = "/usr/local/sbin/hubwizard-user-folder-ssh"  # the key's forced command
SUDOERS = "/etc/sudoers.d/hubwizard-folders"
KEY_DIR = "/etc/hubwizard/storage-host"  # on the hub host
KEY = f"{KEY_DIR}/id_ed25519"
KNOWN_HOSTS = f"{KEY_DIR}/known_hosts"
SET_QUOTA = "/usr/local/sbin/hubwizard-set-quota"
NAME_RE = "^[a-z0-9][a-z0-9_-]*$"  # the hub's SAFE_NAME (assets/partials/common.py.j2)
EXIT_QUOTA = 5  # folder ready, quota not applied: the spawn goes on, the hub logs it


def remote(site: Site) -> bool:
    """Users' folders live on another host than the hub."""
    return site.storage.kind == "nfs" and site.nfs_host.name != site.hub_host.name


def helper_script(site: Site, uid: int, gid: int) -> str:
    """The root helper on the NFS host: one folder, jovyan's, with its quota."""
    quota = (f'if ! out=$({SET_QUOTA} "$folder" 2>&1); then\n'
             f'    echo "hubwizard-user-folder: $folder ready, quota NOT applied: $out" >&2\n'
             f"    exit {EXIT_QUOTA}\nfi\necho \"$out\"\n") if site.quotas.enabled else ""
    return f"""#!/bin/bash
# Written by hubwizard: makes one user's folder under {site.storage.path}, owned by jovyan
# ({uid}:{gid}){", and sets its quota" if site.quotas.enabled else ""}. Run by the hub through SSH (forced command
# {FORCED}, user {HELPER_USER}, sudo for this program only). Safe to run again.
#   usage: {HELPER} NAME | --check
# Exit codes: 0 ready, 2 bad name, 1 cannot make the folder, {EXIT_QUOTA} folder ready but quota not set.
set -euo pipefail
ROOT={shlex.quote(site.storage.path)}
die() {{ code=$1; shift; echo "hubwizard-user-folder: $*" >&2; exit "$code"; }}
if [ "${{1:-}}" = --check ]; then
    [ -d "$ROOT" ] || die 1 "$ROOT does not exist on $(hostname)"
    echo "hubwizard-user-folder: $ROOT ready on $(hostname)"
    exit 0
fi
[ $# -eq 1 ] || die 2 "usage: $0 NAME | --check"
name=$1
[[ $name =~ {NAME_RE} ]] && [ ${{#name}} -le 128 ] || die 2 "refused: '$name' is not a user folder name"
folder=$ROOT/$name
[ ! -L "$folder" ] || die 1 "$folder is a symbolic link: refused"
if [ -d "$folder" ]; then
    echo "hubwizard-user-folder: $folder exists"
else
    install -d -o {uid} -g {gid} -m 0755 "$folder" || die 1 "cannot make $folder"
    echo "hubwizard-user-folder: made $folder ({uid}:{gid})"
fi
{quota}"""


FORCED_SCRIPT = f"""#!/bin/bash
# Written by hubwizard: the only command the hub's key may run on this host (authorized_keys
# of {HELPER_USER}). One word: a user folder name, or "check".
set -euo pipefail
arg=${{SSH_ORIGINAL_COMMAND:-}}
if [ "$arg" = check ]; then exec sudo -n {HELPER} --check; fi
[[ $arg =~ {NAME_RE} ]] || {{ echo "hubwizard-user-folder: refused: not a user folder name" >&2; exit 2; }}
exec sudo -n {HELPER} "$arg"
"""

SUDOERS_TEXT = f"""# Written by hubwizard: the hub's folder helper may run this one program as root.
{HELPER_USER} ALL=(root) NOPASSWD: {HELPER}
"""


def authorized_key(pubkey: str, hub_ip: str) -> str:
    """The hub key's line: one command, from the hub's address, nothing else."""
    return f'restrict,from="{hub_ip}",command="{FORCED}" {pubkey.strip()}\n'


def known_hosts_text(host_keys: str, ip: str, port: int) -> str:
    """NFS host keys (`TYPE BASE64 [comment]` lines) as known_hosts lines for IP[:PORT]."""
    target = ip if port == 22 else f"[{ip}]:{port}"
    lines = [" ".join(line.split()[:2]) for line in host_keys.splitlines() if len(line.split()) >= 2]
    return "".join(f"{target} {line}\n" for line in lines)


def ssh_command(site: Site, nfs_ip: str, word: str) -> list[str]:
    """The ssh command the hub runs (on the hub host) to reach the helper."""
    return ["ssh", "-F", "none", "-i", KEY, "-p", str(site.nfs_host.port or 22),
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={KNOWN_HOSTS}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=20", f"{HELPER_USER}@{nfs_ip}", word]


def _ids(ctx: StepContext) -> tuple[int, int]:
    from hubwizard.core.render import NB_GID, NB_UID

    return NB_UID, NB_GID


def _write(t: Transport, path: str, text: str, mode: str, owner: str = "root:root") -> None:
    """Write a file only if its content differs (atomic: temp file, then mv)."""
    q = shlex.quote(path)
    script = (f"tmp=$(mktemp {q}.XXXXXX) && cat >\"$tmp\" && chmod {mode} \"$tmp\" && chown {owner} \"$tmp\" && "
              f"if cmp -s \"$tmp\" {q} && [ \"$(stat -c %a:%U {q})\" = {mode.lstrip('0')}:{owner.split(':')[0]} ]; "
              f"then rm -f \"$tmp\"; else mv -f \"$tmp\" {q}; fi")
    res = t.run(script, sudo=True, stdin=text)
    if not res.ok:
        raise RuntimeError(f"writing {path} failed: {res.output.strip()[-400:]}")


def _read(t: Transport, path: str) -> str | None:
    res = t.run(f"cat {shlex.quote(path)}", sudo=True)
    return res.stdout if res.ok else None


def _hub_pubkey(hub: Transport, *, create: bool) -> str | None:
    """The hub's helper key (made once, root-only): its public half."""
    if create:
        res = hub.run(f"install -d -m 0700 {KEY_DIR} && {{ test -s {KEY} || "
                      f"ssh-keygen -q -t ed25519 -N '' -C hubwizard-storage-host -f {KEY}; }} && "
                      f"chmod 0600 {KEY}", sudo=True)
        if not res.ok:
            raise RuntimeError(f"ssh-keygen on the hub failed: {res.output.strip()[-400:]} "
                               "(the hub needs openssh-client: apt-get install openssh-client)")
    return _read(hub, f"{KEY}.pub")


def _nfs_host_keys(nfs: Transport) -> str:
    res = nfs.run("cat /etc/ssh/ssh_host_*_key.pub", sudo=True)
    if not res.ok or not res.stdout.strip():
        raise RuntimeError(f"cannot read the NFS host's SSH host keys (/etc/ssh/ssh_host_*_key.pub): {res.output[-300:]}")
    return res.stdout


def _wanted(ctx: StepContext, pubkey: str) -> dict[str, str]:
    """NFS host path -> content it must have."""
    uid, gid = _ids(ctx)
    return {
        HELPER: helper_script(ctx.site, uid, gid),
        FORCED: FORCED_SCRIPT,
        SUDOERS: SUDOERS_TEXT,
        f"{HELPER_HOME}/.ssh/authorized_keys": authorized_key(pubkey, ctx.facts.hub_ip),
    }


def _differs(ctx: StepContext, nfs: Host) -> list[str]:
    """What is missing or out of date, in words (empty: all in place)."""
    hub = ctx.reach(ctx.site.hub_host.name)
    t = ctx.reach(nfs.name)
    pubkey = _hub_pubkey(hub, create=False)
    if not pubkey:
        return [f"no helper key {KEY} on the hub {ctx.site.hub_host.name}"]
    out = [f"{path} on {nfs.name}" for path, text in _wanted(ctx, pubkey).items() if _read(t, path) != text]
    want_known = known_hosts_text(_nfs_host_keys(t), ctx.facts.nfs_ip, nfs.port or 22)
    if _read(hub, KNOWN_HOSTS) != want_known:
        out.append(f"{KNOWN_HOSTS} on the hub {ctx.site.hub_host.name} (the NFS host's host keys)")
    return out


@register("storage_host_current")
def storage_host_current(ctx: StepContext) -> CallResult:
    """Check: helper, forced command, sudoers rule and key on the NFS host; key and pinned host keys on the hub."""
    if not remote(ctx.site):
        return CallResult(True, "storage is on the hub: no folder helper needed", skipped=True)
    missing = _differs(ctx, ctx.site.nfs_host)
    if missing:
        return CallResult(False, "folder helper not in place: " + "; ".join(missing))
    return CallResult(True, f"folder helper on {ctx.site.nfs_host.name}, key on {ctx.site.hub_host.name}")


@register("storage_host_install")
def storage_host_install(ctx: StepContext) -> CallResult:
    """Apply: the helper user, scripts, sudoers rule and key entry on the NFS host; key and known_hosts on the hub."""
    if not remote(ctx.site):
        return CallResult(True, "storage is on the hub: no folder helper needed", skipped=True)
    nfs_host = ctx.site.nfs_host
    hub, nfs = ctx.reach(ctx.site.hub_host.name), ctx.reach(nfs_host.name)
    missing = _differs(ctx, nfs_host)
    if not missing:
        return CallResult(True, "folder helper already in place")
    pubkey = _hub_pubkey(hub, create=True) or ""
    res = nfs.run(f"command -v sudo >/dev/null || {{ export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q sudo "
                  f"|| {{ apt-get update -q && apt-get install -y -q sudo; }}; }}; "
                  f"id -u {HELPER_USER} >/dev/null 2>&1 || useradd --system --home-dir {HELPER_HOME} "
                  f"--create-home --shell /bin/bash {HELPER_USER}; "
                  f"install -d -o {HELPER_USER} -g {HELPER_USER} -m 0700 {HELPER_HOME}/.ssh", sudo=True)
    if not res.ok:
        raise RuntimeError(f"cannot make user {HELPER_USER} on {nfs_host.name}: {res.output.strip()[-400:]}")
    wanted = _wanted(ctx, pubkey)
    _write(nfs, HELPER, wanted[HELPER], "0755")
    _write(nfs, FORCED, wanted[FORCED], "0755")
    check = nfs.run("visudo -cqf /dev/stdin", sudo=True, stdin=SUDOERS_TEXT)
    if not check.ok:
        raise RuntimeError(f"visudo refused the sudoers rule on {nfs_host.name}: {check.output.strip()[-300:]}")
    _write(nfs, SUDOERS, wanted[SUDOERS], "0440")
    keys_path = f"{HELPER_HOME}/.ssh/authorized_keys"
    _write(nfs, keys_path, wanted[keys_path], "0600", owner=f"{HELPER_USER}:{HELPER_USER}")
    _write(hub, KNOWN_HOSTS, known_hosts_text(_nfs_host_keys(nfs), ctx.facts.nfs_ip, nfs_host.port or 22), "0600")
    return CallResult(True, "installed: " + "; ".join(missing), changed=True)


@register("storage_host_reachable")
def storage_host_reachable(ctx: StepContext) -> CallResult:
    """Verify: from the hub host, the hub's key runs the helper's check on the NFS host (as a spawn does)."""
    if not remote(ctx.site):
        return CallResult(True, "storage is on the hub: no folder helper needed", skipped=True)
    hub = ctx.reach(ctx.site.hub_host.name)
    cmd = " ".join(shlex.quote(a) for a in ssh_command(ctx.site, ctx.facts.nfs_ip, "check"))
    res = hub.run(cmd, sudo=True, timeout=60)
    if not res.ok:
        return CallResult(False, f"the hub {ctx.site.hub_host.name} cannot run the folder helper on "
                                 f"{ctx.site.nfs_host.name} ({ctx.facts.nfs_ip}): `{cmd}` said: {res.output.strip()[-400:]}")
    return CallResult(True, res.stdout.strip().splitlines()[-1] if res.stdout.strip() else "helper answered")
