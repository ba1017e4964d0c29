"""The doctor's checks: each maps a symptom admins meet to a diagnosis and a fix.

Each check is a function of the DoctorContext returning Diagnoses (one per host it looked
at); parsing of command output is kept in small pure functions, tested on real captured
outputs (tests/data/doctor_*.txt) where this machine cannot produce the failure itself.
A fix is either the diagnosis' own shell commands (run as root on its host, after the admin
confirmed them) or, where a fix spans hosts or re-runs a recipe step, a fixer function here;
either way it reaches the host through ``doctor.fixes`` (host lock, redacted events).
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from hubwizard.actions import classic, probes
from hubwizard.actions.swarm import SWARM_PORT
from hubwizard.core.config import Host, Site
from hubwizard.core.render import CONSUL_PORT, PATHS, SWARM_MANAGER_PORT
from hubwizard.doctor import fixes
from hubwizard.doctor.context import Diagnosis, DoctorContext, tail

BOTH = ("swarm-mode", "classic")
DISK_FULL_PERCENT = 90
CERT_WARN_DAYS = 14
MAX_SKEW_SECONDS = 2.0
# dockerd restarted too often (a crash loop, a test, a clone's key) hits systemd's start limit, and
# `systemctl start` then fails until the unit's failed state is cleared
RESET_DOCKERD = "systemctl reset-failed docker.service docker.socket 2>/dev/null || true"
NFS_GRACE_WAIT = 120.0  # nfs-ganesha answers JUKEBOX for its grace period (90 s) after a start

Fixer = Callable[[DoctorContext, Diagnosis], "str | None"]


def _always(_: Site) -> bool:
    return True


@dataclass(frozen=True)
class Check:
    """One troubleshooting check: where it applies, how it looks, how its fix runs."""

    name: str
    title: str
    tracks: tuple[str, ...]
    run: Callable[[DoctorContext], list[Diagnosis]]
    applies: Callable[[Site], bool] = _always
    fix: Fixer | None = None  # None: run the diagnosis' fix_commands on its host
    recheck: Callable[[DoctorContext, Diagnosis], list[Diagnosis]] | None = None
    settle: float = 0.0  # seconds the re-check may wait for the fix to take effect


CHECKS: list[Check] = []


def check(name: str, title: str, tracks: tuple[str, ...] = BOTH, applies: Callable[[Site], bool] = _always,
          fix: Fixer | None = None, settle: float = 0.0):
    """Register a check function under ``name`` (order of registration = order of the report)."""

    def wrap(fn: Callable[[DoctorContext], list[Diagnosis]]):
        CHECKS.append(Check(name, title, tracks, fn, applies, fix, None, settle))
        return fn

    return wrap


def by_name(name: str) -> Check:
    for c in CHECKS:
        if c.name == name:
            return c
    raise KeyError(f"no doctor check named {name!r}")


# ===================================================================== pure parsers


def parse_table(text: str) -> list[dict[str, str]]:
    """A docker CLI table (`docker node ls`, `docker service ps`) -> rows keyed by header.

    Columns are cut at the header's offsets, because cells may be empty (MANAGER STATUS) or
    hold spaces (CURRENT STATE "Rejected 2 seconds ago", ERROR "No such image: ...").
    """
    lines = [line for line in text.splitlines() if line.strip()]
    header_at = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ID ")), None)
    if header_at is None:
        return []
    header = lines[header_at]
    starts = [m.start() for m in re.finditer(r"(?:(?<=\s\s)|^)\S.*?(?=\s\s|$)", header)]
    names = [header[s:e].strip() for s, e in zip(starts, [*starts[1:], None], strict=True)]
    rows = []
    for line in lines[header_at + 1:]:
        if line.lstrip().startswith("ID ") or line.startswith(("Error", "ubuntu@", "root@", "$")):
            break
        cells = [line[s:e].strip() if s < len(line) else "" for s, e in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def swarm_node_problems(text: str, nodes: dict[str, str]) -> dict[str, str]:
    """`docker node ls` output -> {site node name: problem} for nodes Down or missing, plus
    {"(leader)": why} when the swarm has no leader or a manager is unreachable."""
    problems: dict[str, str] = {}
    if "does not have a leader" in text:
        problems["(leader)"] = "the swarm has no leader: quorum is lost (more than half of the managers are down)"
        return problems
    if "not a swarm manager" in text:
        problems["(leader)"] = "the hub is not a swarm manager (swarm not initialised, or it left the swarm)"
        return problems
    rows = parse_table(text)
    managers = [r for r in rows if r.get("MANAGER STATUS")]
    unreachable = [r for r in managers if r["MANAGER STATUS"] == "Unreachable"]
    if managers and not any(r["MANAGER STATUS"] == "Leader" for r in managers):
        problems["(leader)"] = "no manager is Leader"
    elif unreachable:
        names = ", ".join(r["HOSTNAME"] for r in unreachable)
        lost = len(managers) - len(unreachable) <= len(managers) // 2
        problems["(leader)"] = (f"{len(unreachable)} of {len(managers)} managers unreachable ({names}): "
                                + ("quorum lost" if lost else "quorum holds only while more than half answer"))
    for name, hostname in nodes.items():
        mine = [r for r in rows if r.get("HOSTNAME") == hostname]
        if not mine:
            problems[name] = f"{hostname} is missing from the cluster (`docker node ls` does not list it)"
        elif all(r.get("STATUS") != "Ready" for r in mine):
            problems[name] = f"{hostname} is {mine[0].get('STATUS')} (availability {mine[0].get('AVAILABILITY')})"
    return problems


def no_such_image_tasks(text: str) -> list[dict[str, str]]:
    """Rows of `docker service ps --no-trunc` whose task failed with "No such image"."""
    return [r for r in parse_table(text) if "no such image" in r.get("ERROR", "").lower()]


def parse_df(text: str) -> list[tuple[str, int, str]]:
    """`df -Pk` lines -> (filesystem, use percent, mount point), without repeats."""
    out, seen = [], set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[4].endswith("%") and parts[4][:-1].isdigit():
            mount = " ".join(parts[5:])
            if mount not in seen:
                seen.add(mount)
                out.append((parts[0], int(parts[4][:-1]), mount))
    return out


def parse_enddate(text: str) -> dt.datetime | None:
    """`openssl x509 -enddate -noout` -> the expiry as an aware UTC datetime."""
    m = re.search(r"notAfter=(\w{3}\s+\d+\s+[\d:]+\s+\d{4})\s+GMT", text)
    if not m:
        return None
    return dt.datetime.strptime(" ".join(m.group(1).split()), "%b %d %H:%M:%S %Y").replace(tzinfo=dt.UTC)


def skew_outliers(offsets: dict[str, float], limit: float = MAX_SKEW_SECONDS) -> dict[str, float]:
    """Hosts whose clock is more than ``limit`` seconds from the median of all hosts."""
    if len(offsets) < 2:
        return {}
    mid = statistics.median(offsets.values())
    return {h: o - mid for h, o in offsets.items() if abs(o - mid) > limit}


# ===================================================================== helpers


def _hub(ctx: DoctorContext) -> Host:
    return ctx.site.hub_host


def _is_classic(site: Site) -> bool:
    return site.site.track == "classic"


# ===================================================================== both tracks


@check("docker-engine", "dockerd answers on every host", settle=30)
def docker_engine(ctx: DoctorContext) -> list[Diagnosis]:
    def one(h: Host) -> Diagnosis:
        res = ctx.run(h, "docker info --format '{{.ServerVersion}}' 2>&1", timeout=30)
        if res.ok and res.stdout.strip():
            return Diagnosis("docker-engine", h.name, True, f"dockerd {res.stdout.strip()} answers")
        unit = ctx.run(h, "systemctl is-active docker; journalctl -u docker -n 6 --no-pager -o cat 2>/dev/null",
                       timeout=30)
        return Diagnosis("docker-engine", h.name, False, "dockerd does not answer on this host",
                         tail(res.output + "\n" + unit.output),
                         fix_title=f"start dockerd on {h.name} (a Swarm node without it is Down)",
                         fix_commands=(RESET_DOCKERD, "systemctl start docker"))

    return ctx.each(ctx.site.active_hosts, one)


def _disk_paths(site: Site, h: Host) -> list[str]:
    paths = ["/", "/var/lib/docker"]
    if h.name == site.nfs_host.name and site.site.track == "swarm-mode":
        paths.append(site.storage.path)
    if _is_classic(site) and h.name == site.hub_host.name:
        paths.append("/home")
    return paths


@check("disk-space", f"no filesystem above {DISK_FULL_PERCENT}% on any host")
def disk_space(ctx: DoctorContext) -> list[Diagnosis]:
    def one(h: Host) -> list[Diagnosis]:
        paths = _disk_paths(ctx.site, h)
        script = "; ".join(f"[ -e {shlex.quote(p)} ] && df -Pk {shlex.quote(p)} | tail -n +2" for p in paths)
        rows = parse_df(ctx.run(h, script + "; true", timeout=30).stdout)
        full = [(fs, pct, mnt) for fs, pct, mnt in rows if pct >= DISK_FULL_PERCENT]
        if not full:
            worst = max((pct for _, pct, _ in rows), default=0)
            return [Diagnosis("disk-space", h.name, True, f"disk use at most {worst}%")]
        out = []
        for fs, pct, mnt in full:
            docker_fs = mnt in ("/", "/var/lib/docker")
            out.append(Diagnosis(
                "disk-space", h.name, False, f"{mnt} is {pct}% full ({fs})",
                f"checked: {', '.join(paths)}",
                fix_title="remove unused images and build cache" if docker_fs else
                f"{mnt} holds data: grow the disk or move files; hubwizard deletes no user data",
                fix_commands=("docker image prune -af", "docker builder prune -af") if docker_fs else ()))
        return out

    return ctx.each(ctx.site.active_hosts, one)


@check("clock-skew", f"clocks within {MAX_SKEW_SECONDS:.0f}s of each other")
def clock_skew(ctx: DoctorContext) -> list[Diagnosis]:
    def offset(h: Host) -> list[Diagnosis]:
        try:  # preflight's measurement (host clock - this machine's, halving the round trip)
            offsets[h.name], _ = probes.clock_skew(ctx.step_context(h, "doctor:clock-skew", "check"))
        except ValueError:
            return [Diagnosis("clock-skew", h.name, False, "cannot read the clock",
                              "`date +%s.%N` printed no time")]
        return []

    offsets: dict[str, float] = {}
    out = ctx.each(ctx.site.active_hosts, offset)
    bad = skew_outliers(offsets)
    for name in offsets:
        if name in bad:
            out.append(Diagnosis("clock-skew", name, False, f"clock is {bad[name]:+.1f}s off the other hosts",
                                 "TLS, Swarm's raft and Consul fail with skewed clocks",
                                 fix_title="turn on time synchronisation (systemd-timesyncd or chrony)",
                                 fix_commands=("timedatectl set-ntp true",)))
        else:
            out.append(Diagnosis("clock-skew", name, True, f"clock within {MAX_SKEW_SECONDS:.0f}s of the others"))
    return out


def _cert_files(site: Site, h: Host) -> list[str]:
    if _is_classic(site):
        files = [f"{PATHS['docker_tls']}/server-cert.pem"]
        return files + [f"{PATHS['docker_tls_client']}/cert.pem"] if h.name == site.hub_host.name else files
    return [f"{PATHS['letsencrypt_live']}/{site.site.domain}/cert.pem"] if h.name == site.hub_host.name else []


def _fix_cert(ctx: DoctorContext, d: Diagnosis) -> str | None:
    if _is_classic(ctx.site):
        return fixes.apply_step(ctx, "classic-docker-tls", d.host)
    return fixes.run_fix_commands(ctx, d)


def _cert_applies(site: Site) -> bool:
    return _is_classic(site) and site.classic.docker_tls or site.site.track == "swarm-mode" and site.https.enabled


@check("cert-expiry", f"certificates valid for more than {CERT_WARN_DAYS} days", applies=_cert_applies,
       fix=_fix_cert, settle=20)
def cert_expiry(ctx: DoctorContext) -> list[Diagnosis]:
    def one(h: Host) -> list[Diagnosis]:
        out = []
        for path in _cert_files(ctx.site, h):
            res = ctx.run(h, f"openssl x509 -enddate -noout -in {shlex.quote(path)} 2>&1", timeout=20)
            end = parse_enddate(res.stdout)
            fix = _cert_fix(ctx, h)
            if end is None:
                out.append(Diagnosis("cert-expiry", h.name, False, f"no readable certificate at {path}",
                                     res.output, *fix))
                continue
            days = (end - dt.datetime.now(dt.UTC)).total_seconds() / 86400
            if days < CERT_WARN_DAYS:
                what = "EXPIRED" if days < 0 else f"expires in {days:.1f} days"
                out.append(Diagnosis("cert-expiry", h.name, False, f"{path} {what} ({end:%Y-%m-%d})", "", *fix))
            else:
                out.append(Diagnosis("cert-expiry", h.name, True, f"{path} valid {days:.0f} more days"))
        return out

    return ctx.each(ctx.site.active_hosts, one)


def _cert_fix(ctx: DoctorContext, h: Host) -> tuple[str, tuple[str, ...]]:
    if _is_classic(ctx.site):
        return ("re-issue this host's Docker certificates from the site CA and restart dockerd",
                fixes.step_commands(ctx, "classic-docker-tls", h))
    return ("renew the Let's Encrypt certificate and reload nginx",
            (f"certbot renew --cert-name {shlex.quote(ctx.site.site.domain)} --force-renewal",
             "systemctl reload nginx"))


def _nfs_target(site: Site, ctx: DoctorContext) -> tuple[Host, str, str]:
    """(server host, its IP, exported path) the nodes write to."""
    if _is_classic(site):
        return site.hub_host, ctx.facts.hub_ip, "/home"
    return site.nfs_host, ctx.facts.nfs_ip, site.storage.path


def _fix_nfs(ctx: DoctorContext, d: Diagnosis) -> str | None:
    """The diagnosis is the node's (it cannot write), its fix the server's."""
    server, _, _ = _nfs_target(ctx.site, ctx)
    return fixes.run_fix_commands(ctx, d, host=server.name)


def _nfs_restart(site: Site) -> tuple[str, ...]:
    if not _is_classic(site) and site.storage.implementation == "ganesha":
        return ("systemctl restart rpcbind nfs-ganesha",)
    return ("systemctl restart nfs-kernel-server", "exportfs -ra")


# classic: /home of the hub, through a kernel mount where there is an NFS client, else libnfs;
# a fresh file name each try (nfs-cp creates exclusively; a failed try may leave the file)
NFS_WRITE_SCRIPT = """
set -u
f=.hubwizard-doctor-$(hostname)-$$-$(date +%s%N)
if grep -qw nfs /proc/filesystems || modprobe -q nfs 2>/dev/null; then
  d=$(mktemp -d) && mount -t nfs -o vers=3,soft,timeo=50,retrans=1 "$SRV:$DIR" "$d" \\
    && date > "$d/$f" && cat "$d/$f" >/dev/null && rm -f "$d/$f"; rc=$?; umount "$d" 2>/dev/null; rmdir "$d"; exit $rc
elif command -v nfs-cp >/dev/null; then
  date > "/tmp/$f" && timeout 30 nfs-cp "/tmp/$f" "nfs://$SRV$DIR/$f"; rc=$?; rm -f "/tmp/$f"; exit $rc
else
  echo "NO-NFS-CLIENT"; exit 99
fi
"""


def _classic_write(ctx: DoctorContext, h: Host, ip: str, path: str) -> tuple[bool, str, bool]:
    """(ok, output, cannot check) of a test write to the hub's /home, tried again while the
    server answers NFS3ERR_JUKEBOX ("try again later": just (re)started, in its grace period)."""
    env = f"SRV={shlex.quote(ip)} DIR={shlex.quote(path)}"
    deadline = time.monotonic() + NFS_GRACE_WAIT
    while True:
        res = ctx.run(h, f"{env} sh -c {shlex.quote(NFS_WRITE_SCRIPT)}", timeout=90)
        if res.ok or "JUKEBOX" not in res.output or time.monotonic() > deadline:
            return res.ok, res.output, res.exit_code == 99
        time.sleep(5)


def _recipe_args(ctx: DoctorContext, call: str) -> dict:
    """The arguments the site's recipes give ``call``: the doctor runs it as the step does."""
    items = [i for s in ctx.session.steps for i in (*s.check, *s.apply, *s.verify) if i.call == call]
    return dict(items[0].args) if items else {}


def _swarm_write(ctx: DoctorContext, h: Host) -> tuple[bool, str, bool]:
    """The storage step's own test write (libnfs, into the folder the squashed clients may
    write, read back on the server; it waits out the server's grace period itself)."""
    from hubwizard.engine import calls

    res = calls.get("nfs_test_write")(ctx.step_context(h, "doctor:nfs-write", "check"),
                                      **_recipe_args(ctx, "nfs_test_write"))
    return res.ok, res.message, bool(res.skipped)


@check("nfs-write", "each node can write to the shared storage over NFS",
       applies=lambda s: s.storage.kind in ("nfs", "autofs"), fix=_fix_nfs, settle=30)
def nfs_write(ctx: DoctorContext) -> list[Diagnosis]:
    server, ip, path = _nfs_target(ctx.site, ctx)

    def one(h: Host) -> Diagnosis:
        ok, output, cannot = _classic_write(ctx, h, ip, path) if _is_classic(ctx.site) else _swarm_write(ctx, h)
        if cannot:
            return Diagnosis("nfs-write", h.name, False, "cannot check on this host: kernel has no NFS client "
                             "(and libnfs-utils' nfs-cp is not installed)", skipped=True)
        if ok:
            return Diagnosis("nfs-write", h.name, True, f"test write to {ip}:{path} worked")
        if "JUKEBOX" in output:
            return Diagnosis("nfs-write", h.name, False, f"{ip}:{path} answers 'try again later' (NFS3ERR_JUKEBOX): "
                             "the server is still in its grace period after a restart", tail(output),
                             fix_title="wait for the grace period (90 s by default) to end, then run doctor again")
        if "MNT3ERR_ACCES" in output or "access denied" in output.lower():
            step = "classic-nfs-home" if _is_classic(ctx.site) else "storage"
            return Diagnosis("nfs-write", h.name, False, f"{ip} refuses to let this node mount {path}: not exported "
                             "to it", tail(output),
                             fix_title=f"export it to the cluster: `hubwizard apply --only {step}`, then re-check")
        return Diagnosis("nfs-write", h.name, False, f"test write to {ip}:{path} failed", tail(output),
                         fix_title=f"on {server.name} (the NFS server): restart it and re-export",
                         fix_commands=_nfs_restart(ctx.site))

    return ctx.each(ctx.site.nodes, one)


# ===================================================================== swarm mode


def _node_hostnames(ctx: DoctorContext) -> dict[str, str]:
    """Site node name -> its machine hostname (what `docker node ls` shows)."""
    names = {}
    for h in ctx.reachable(ctx.site.nodes):
        res = ctx.run(h, "hostname", sudo=False, timeout=20)
        names[h.name] = res.stdout.strip() or h.name
    return names


def _swarm_fix(ctx: DoctorContext, d: Diagnosis) -> str | None:
    """A missing node leaves whatever swarm it thinks it is in and joins again through the
    swarm-join step (the Docker API: the token never reaches a command line); else the commands
    (the leader's on the hub, a node's restart on the node: each diagnosis' own host)."""
    if "missing from the cluster" not in d.summary:
        return fixes.run_fix_commands(ctx, d)
    return (fixes.call(ctx, d.host, "swarm_leave", fixes.label(d), force=True)
            or fixes.apply_step(ctx, "swarm-join", d.host))


@check("swarm-nodes", "Swarm mode: a leader, quorum, and every node Ready", tracks=("swarm-mode",),
       fix=_swarm_fix, settle=40)
def swarm_nodes(ctx: DoctorContext) -> list[Diagnosis]:
    hub = _hub(ctx)
    res = ctx.run(hub, "docker node ls 2>&1", timeout=30)
    hostnames = _node_hostnames(ctx)
    problems = swarm_node_problems(res.output, hostnames)
    out = []
    leader = problems.pop("(leader)", None)
    if leader:
        quorum = "quorum" in leader or "no leader" in leader
        out.append(Diagnosis("swarm-nodes", hub.name, False, leader, tail(res.output),
                             fix_title="force a new cluster from the hub's manager state (keeps services)"
                             if quorum else "initialise Swarm mode on the hub: `hubwizard apply`",
                             fix_commands=(f"docker swarm init --force-new-cluster --advertise-addr "
                                           f"{ctx.facts.hub_ip}",) if quorum else ()))
        if "not a swarm manager" in leader or "no leader" in leader:
            return out
    else:
        out.append(Diagnosis("swarm-nodes", hub.name, True, "the swarm has a leader and its managers are reachable"))
    for name in hostnames:
        if name in problems:
            missing = "missing" in problems[name]
            out.append(Diagnosis(
                "swarm-nodes", name, False, problems[name], tail(res.output),
                fix_title="join it again with a worker token from the hub" if missing else
                f"restart dockerd on {name} so it reconnects to the managers",
                fix_commands=("docker swarm join --token <worker token from the hub> "
                              f"{ctx.facts.hub_ip}:{SWARM_PORT}",) if missing else
                (RESET_DOCKERD, "systemctl restart docker")))
        else:
            out.append(Diagnosis("swarm-nodes", name, True, "Ready in the swarm"))
    return out


@check("no-such-image", "no task fails with \"No such image\"", tracks=("swarm-mode",))
def no_such_image(ctx: DoctorContext) -> list[Diagnosis]:
    hub = _hub(ctx)
    res = ctx.run(hub, "ids=$(docker service ls -q) && [ -n \"$ids\" ] && docker service ps --no-trunc $ids 2>&1",
                  timeout=60)
    bad = no_such_image_tasks(res.stdout)
    if not bad:
        return [Diagnosis("no-such-image", hub.name, True, "no task failed for a missing image")]
    by_host = {h.name: h for h in ctx.site.active_hosts}
    seen, out = set(), []
    for row in bad:
        node, image = row.get("NODE", ""), row.get("IMAGE", "")
        if (node, image) in seen:
            continue
        seen.add((node, image))
        host = node if node in by_host else hub.name
        out.append(Diagnosis(
            "no-such-image", host, False, f"tasks on {node} fail: {row.get('ERROR', '').strip(chr(34))}",
            f"service task {row.get('NAME', '').strip()} ({image}); the image was not pushed, or {node} cannot "
            "pull it (registry login, insecure-registries in daemon.json)",
            fix_title=f"pull {image} on {node} (it fails the same way if the image was never pushed)",
            fix_commands=(f"docker pull {shlex.quote(image)}",)))
    return out


@check("hub-network", "the hub's overlay network exists, is attachable, and the hub is on it",
       tracks=("swarm-mode",))
def hub_network(ctx: DoctorContext) -> list[Diagnosis]:
    from hubwizard.core.render import HUB_SERVICE

    hub, net = _hub(ctx), ctx.site.hub.network
    res = ctx.run(hub, f"docker network inspect {shlex.quote(net)} --format "
                       "'{{.Driver}} {{.Attachable}} {{.ID}}' 2>&1", timeout=30)
    create = f"docker network create --driver overlay --attachable {shlex.quote(net)}"
    if not res.ok:
        return [Diagnosis("hub-network", hub.name, False, f"the network {net} does not exist", tail(res.output),
                          fix_title=f"create {net} (overlay, attachable), then `hubwizard apply` re-attaches the hub",
                          fix_commands=(create,))]
    driver, attachable, net_id = (res.stdout.split() + ["", "", ""])[:3]
    if driver != "overlay" or attachable != "true":
        return [Diagnosis("hub-network", hub.name, False,
                          f"{net} is {driver}, attachable={attachable}: spawned servers cannot join it", "",
                          fix_title="recreate it as an attachable overlay (the hub service is removed first; "
                          "`hubwizard apply` recreates it)",
                          fix_commands=(f"docker service rm {HUB_SERVICE} || true",
                                        f"docker network rm {shlex.quote(net)}", create))]
    svc = ctx.run(hub, f"docker service inspect {HUB_SERVICE} --format "
                       "'{{range .Spec.TaskTemplate.Networks}}{{.Target}} {{end}}' 2>/dev/null", timeout=30)
    if svc.ok and net_id not in svc.stdout.split() and net not in svc.stdout.split():
        return [Diagnosis("hub-network", hub.name, False,
                          f"the hub service is not on {net}: servers reach the hub at hub_connect_ip "
                          f"'{HUB_SERVICE}', a name that only resolves on that network", svc.output,
                          fix_title=f"attach the hub service to {net}",
                          fix_commands=(f"docker service update --network-add {shlex.quote(net)} {HUB_SERVICE}",))]
    return [Diagnosis("hub-network", hub.name, True, f"{net} is an attachable overlay"
                      + (" and the hub service is on it" if svc.ok else " (no hub service yet)"))]


def _fix_quota(ctx: DoctorContext, d: Diagnosis) -> str | None:
    return fixes.apply_step(ctx, "quotas", d.host)


@check("quota", "user folders have an enforced XFS project quota", tracks=("swarm-mode",),
       applies=lambda s: s.quotas.enabled, fix=_fix_quota)
def quota_enforced(ctx: DoctorContext) -> list[Diagnosis]:
    from hubwizard.engine import calls

    nfs, path = ctx.site.nfs_host, ctx.site.storage.path
    mnt = ctx.run(nfs, f"findmnt -n -o FSTYPE,OPTIONS -T {shlex.quote(path)}", timeout=20).stdout.split()
    fstype, options = (mnt + ["", ""])[:2]
    if fstype != "xfs" or not re.search(r"\b(prjquota|pquota|pqnoenforce)\b", options):
        return [Diagnosis("quota", nfs.name, False, f"{path} is on {fstype or 'an unknown filesystem'} without "
                          "project quotas: no quota can be enforced", f"mount options: {options}",
                          fix_title="put the user folders on XFS mounted with prjquota (fstab), then re-run apply")]
    # the quotas step's own read-back: every user folder's project has a hard limit
    res = calls.get("quota_readback")(ctx.step_context(nfs, "doctor:quota", "check"))
    if not res.ok:
        return [Diagnosis("quota", nfs.name, False, res.message.splitlines()[0] if res.message else "quota check failed",
                          tail(res.message),
                          fix_title="set each folder's project quota (the quotas step: set_quota on every folder)",
                          fix_commands=fixes.step_commands(ctx, "quotas", nfs))]
    return [Diagnosis("quota", nfs.name, True, res.message)]


# ===================================================================== classic


def _classic(site: Site) -> bool:
    return _is_classic(site)


def _fix_consul(ctx: DoctorContext, d: Diagnosis) -> str | None:
    """Remove and recreate the Consul container (the recipe step), then restart the manager."""
    hub = d.host
    return (fixes.run_commands(ctx, hub, [f"docker rm -f {classic.CONSUL}"], fixes.label(d))
            or fixes.apply_step(ctx, "classic-consul", hub)
            or fixes.run_commands(ctx, hub, [f"docker restart {classic.MANAGER}"], fixes.label(d)))


@check("consul", "Consul answers and the manager has an elected primary", tracks=("classic",),
       fix=_fix_consul, settle=30)
def consul(ctx: DoctorContext) -> list[Diagnosis]:
    hub, ip = _hub(ctx), ctx.facts.hub_ip
    state = ctx.run(hub, f"docker inspect -f '{{{{.State.Status}}}} restarts={{{{.RestartCount}}}}' "
                         f"{classic.CONSUL} 2>&1", timeout=30)
    leader = ctx.run(hub, f"curl -fsS --max-time 5 http://{ip}:{CONSUL_PORT}/v1/status/leader 2>&1", timeout=30)
    mgr = ctx.run(hub, f"{classic.manager_cli(ctx.site, ip)} ps 2>&1", timeout=30)
    info = classic.parse_classic_info(mgr.output)
    has_leader = leader.ok and leader.stdout.strip() not in ("", '""')
    running = state.ok and state.stdout.startswith("running")
    if running and has_leader and not info["no_primary"]:
        return [Diagnosis("consul", hub.name, True, f"Consul runs and knows its leader ({leader.stdout.strip()})")]
    symptom = ("No elected primary cluster manager: " if info["no_primary"] else "") + (
        "Consul is broken" + ("" if running else f" (container {state.stdout.strip() or 'missing'})")
        + ("" if has_leader else f", no leader on :{CONSUL_PORT}"))
    fix = (f"docker rm -f {classic.CONSUL}", *fixes.step_commands(ctx, "classic-consul", hub),
           f"docker restart {classic.MANAGER}")
    return [Diagnosis("consul", hub.name, False, symptom,
                      tail(f"{state.output}\nleader: {leader.output}\nmanager: {mgr.output}"),
                      fix_title="remove and recreate the Consul container, then restart the manager",
                      fix_commands=fix)]


def _fix_manager(ctx: DoctorContext, d: Diagnosis) -> str | None:
    exists = ctx.run(d.host, f"docker inspect {classic.MANAGER} >/dev/null 2>&1", timeout=20).ok
    if exists:
        return fixes.run_commands(ctx, d.host, [f"docker restart {classic.MANAGER}"], fixes.label(d))
    return fixes.apply_step(ctx, "classic-manager", d.host)


@check("manager", f"the Swarm manager answers on HUB_IP:{SWARM_MANAGER_PORT}", tracks=("classic",), fix=_fix_manager, settle=20)
def manager(ctx: DoctorContext) -> list[Diagnosis]:
    hub, ip = _hub(ctx), ctx.facts.hub_ip
    res = ctx.run(hub, f"{classic.manager_cli(ctx.site, ip)} version --format '{{{{.Server.Version}}}}' 2>&1",
                  timeout=30)
    if res.ok:
        return [Diagnosis("manager", hub.name, True, f"answers on {ip}:{SWARM_MANAGER_PORT} ({res.stdout.strip()})")]
    exists = ctx.run(hub, f"docker inspect -f '{{{{.State.Status}}}}' {classic.MANAGER} 2>&1", timeout=20)
    return [Diagnosis("manager", hub.name, False, f"the manager does not answer on {ip}:{SWARM_MANAGER_PORT}",
                      tail(res.output + f"\ncontainer {classic.MANAGER}: {exists.output}"),
                      fix_title="restart the swarm-manager container (or create it again)",
                      fix_commands=(f"docker restart {classic.MANAGER}",) if exists.ok else
                      fixes.step_commands(ctx, "classic-manager", hub))]


def _fix_join(ctx: DoctorContext, d: Diagnosis) -> str | None:
    if "missing" in d.summary:
        return (fixes.run_commands(ctx, d.host, [f"docker rm -f {classic.AGENT} >/dev/null 2>&1 || true"],
                                   fixes.label(d))
                or fixes.apply_step(ctx, "classic-join", d.host))
    return fixes.run_commands(ctx, d.host, [f"{RESET_DOCKERD}; systemctl restart docker"], fixes.label(d))


@check("cluster-nodes", "every node is in the legacy Swarm and Healthy", tracks=("classic",), fix=_fix_join,
       settle=40)
def cluster_nodes(ctx: DoctorContext) -> list[Diagnosis]:
    hub = _hub(ctx)
    if ctx.site.classic.lab_stand_ins:
        return [Diagnosis("cluster-nodes", hub.name, False, "cannot check here: the lab's stand-in manager relays "
                          "to the hub's own dockerd, which has no Swarm node list", skipped=True)]
    res = ctx.run(hub, f"{classic.manager_cli(ctx.site, ctx.facts.hub_ip)} info 2>&1", timeout=30)
    info = classic.parse_classic_info(res.output)
    out = []
    for h in ctx.site.nodes:
        problems = classic.node_problems(info, {h.name: ctx.ip(h)})
        if not problems:
            out.append(Diagnosis("cluster-nodes", h.name, True, "Healthy in the manager's node list"))
            continue
        missing = "missing" in problems[0]
        out.append(Diagnosis("cluster-nodes", h.name, False, problems[0], tail(res.output),
                             fix_title="run the swarm agent again on this node" if missing else
                             "restart dockerd on this node so the manager reconnects",
                             fix_commands=(f"docker rm -f {classic.AGENT}", *fixes.step_commands(ctx, "classic-join", h))
                             if missing else (RESET_DOCKERD, "systemctl restart docker")))
    return out


@check("engine-ids", "every engine has its own ID (no cloned /etc/docker/key.json)", tracks=("classic",),
       settle=30)
def engine_ids(ctx: DoctorContext) -> list[Diagnosis]:
    ids: dict[str, str] = {}

    def one(h: Host) -> list[Diagnosis]:
        ids[h.name] = ctx.run(h, "docker info --format '{{.ID}}' 2>/dev/null", timeout=30).stdout.strip()
        return []

    ctx.each(ctx.site.active_hosts, one)
    out: list[Diagnosis] = []
    first: dict[str, str] = {}
    for h in ctx.site.active_hosts:
        engine_id = ids.get(h.name)
        if not engine_id:
            continue
        if engine_id in first:
            out.append(Diagnosis("engine-ids", h.name, False, f"same engine ID as {first[engine_id]}: a clone "
                                 "whose /etc/docker/key.json was not removed; Swarm sees one node", engine_id,
                                 fix_title="give this engine a new ID",
                                 fix_commands=("systemctl stop docker", "rm -f /etc/docker/key.json", RESET_DOCKERD,
                                               "systemctl start docker")))
        else:
            first[engine_id] = h.name
            out.append(Diagnosis("engine-ids", h.name, True, "unique engine ID"))
    return out


@check("clone-ready", "spare machines are ready to be cloned or added (no containers, no key.json)",
       tracks=("classic",), applies=lambda s: any(h.spare for h in s.hosts))
def clone_ready(ctx: DoctorContext) -> list[Diagnosis]:
    def one(h: Host) -> Diagnosis:
        problems = classic.clone_problems(ctx.connections.get(h.name))
        if not problems:
            return Diagnosis("clone-ready", h.name, True, "ready to clone or add")
        return Diagnosis("clone-ready", h.name, False, "not ready to be a clone's source or a new node",
                         "\n".join(problems), fix_title="remove the containers and the engine key",
                         fix_commands=("docker rm -f $(docker ps -aq) 2>/dev/null || true",
                                       "rm -f /etc/docker/key.json"))

    return ctx.each([h for h in ctx.site.hosts if h.spare], one)


@check("uids", "users have the same UID on every host (NFS compares numbers)", tracks=("classic",))
def uids(ctx: DoctorContext) -> list[Diagnosis]:
    hub = _hub(ctx)
    users = classic.site_users(ctx.site) or classic._home_users(ctx.connections.get(hub.name))
    if not users:
        return [Diagnosis("uids", hub.name, False, "no users to compare ([hub] allowed_users, or folders in the "
                          "hub's /home)", skipped=True)]
    cmd = "getent passwd " + " ".join(shlex.quote(u) for u in users) + " || true"
    hosts = ctx.reachable(ctx.site.active_hosts)
    tables = {h.name: classic.parse_passwd(ctx.run(h, cmd, sudo=False, timeout=20).stdout) for h in hosts}
    problems = classic.uid_mismatches(users, tables, hub.name)
    if problems:
        return [Diagnosis("uids", hub.name, False, f"{len(problems)} user(s) differ between hosts",
                          "\n".join(problems),
                          fix_title="create or renumber the user with the hub's uid:gid on that host "
                          "(`useradd -u UID -g GID NAME`; `usermod -u` then chown its files)")]
    return [Diagnosis("uids", hub.name, True, f"{len(users)} user(s) with the same uid:gid on every host")]
