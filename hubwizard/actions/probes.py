"""Read-only probes the recipes call: preflight facts, versions, ports, storage and quota support.

Why Python and not shell lines in the YAML: each probe reads several facts at once and
turns them into one verdict with numbers and a fix an admin can act on ("4 GiB of memory,
the hub needs 2"), which a shell test exit code cannot say. None of them changes a host,
except that the port probe may open a *temporary* listener on the hub (it exits by itself,
and swarm-init ends it early).
"""

from __future__ import annotations

import json
import re
import shlex
import time

from hubwizard.engine.calls import CallResult, StepContext, register

# Swarm mode's ports (docs.docker.com "Open protocols and ports between the hosts").
SWARM_TCP = (2377, 7946)
SWARM_UDP = (7946, 4789)
CLOCK_WARN_S = 2.0
CLOCK_FAIL_S = 30.0
MIN_MEM_MIB, WARN_MEM_MIB = 1024, 4096
MIN_DISK_GIB, WARN_DISK_GIB = 2.0, 10.0
ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}
LISTENER_TTL_S = 45.0
UNEXPORTABLE_FS = {"overlayfs", "overlay", "aufs"}  # stat -f -c %T names; no NFS file handles


# ---------------------------------------------------------------- helpers


def version_tuple(text: str) -> tuple[int, ...]:
    """'20.10.24+dfsg1' -> (20, 10, 24); '28.2.2' -> (28, 2, 2); non-numeric tails are dropped."""
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", text)
    if not m:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(p) for p in m.group(1).split("."))


def version_at_least(have: str, want: str) -> bool:
    """Compare versions numerically (so 20.10 < 23.0 and 9.0 < 10.0), missing parts count as 0."""
    a, b = version_tuple(have), version_tuple(want)
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)) >= b + (0,) * (width - len(b))


def parse_os_release(text: str) -> dict[str, str]:
    """/etc/os-release -> {ID: debian, VERSION_ID: 12, ...} (values unquoted)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            out[key.strip()] = value.strip().strip('"').strip("'")
    return out


def _is_hub(ctx: StepContext) -> bool:
    return ctx.host.name == ctx.site.hub_host.name


def _hub_ip(ctx: StepContext) -> str:
    return ctx.facts.hub_ip


# ---------------------------------------------------------------- preflight


@register("preflight_access")
def preflight_access(ctx: StepContext) -> CallResult:
    """SSH works (we are here) and sudo runs without a prompt we cannot answer."""
    who = ctx.run("id -un", sudo=False)
    if not who.ok:
        return CallResult(False, f"cannot run a command over SSH: {who.output}")
    if ctx.host.user == "root":
        return CallResult(True, "SSH as root (no sudo needed)")
    res = ctx.run("true", sudo=True)
    if not res.ok:
        how = "with the sudo password given" if ctx.host.sudo == "password" else "without a password (sudo -n)"
        return CallResult(False, f"sudo failed {how} for {ctx.host.user}: {res.output or 'exit ' + str(res.exit_code)}")
    return CallResult(True, f"SSH as {who.stdout.strip()}, sudo works ({ctx.host.sudo})")


@register("preflight_os")
def preflight_os(ctx: StepContext) -> CallResult:
    """A Debian-family OS (the recipes use apt) on amd64 or arm64."""
    res = ctx.run("cat /etc/os-release; echo ---; uname -m", sudo=False)
    text, _, arch = res.stdout.partition("---")
    osr = parse_os_release(text)
    arch = arch.strip()
    name = osr.get("PRETTY_NAME") or osr.get("ID", "unknown OS")
    family = {osr.get("ID", "")} | set(osr.get("ID_LIKE", "").split())
    problems = []
    if not family & {"debian", "ubuntu"}:
        problems.append(f"{name} is not Debian or Ubuntu: unsupported OS (the recipes install with apt-get)")
    if arch not in ARCHES:
        problems.append(f"architecture {arch or '?'} is not supported (need x86_64 or aarch64)")
    if problems:
        return CallResult(False, "; ".join(problems))
    return CallResult(True, f"{name}, {arch}")


@register("preflight_resources")
def preflight_resources(ctx: StepContext) -> CallResult:
    """CPU, memory and free disk (where Docker keeps images, and the NFS folder on its host)."""
    paths = ["/var/lib"]
    if ctx.host.name == ctx.site.nfs_host.name:
        paths.append(ctx.site.storage.path)
    script = (
        "nproc; grep MemTotal /proc/meminfo; "
        + "; ".join(
            f'p={shlex.quote(p)}; while [ ! -e "$p" ]; do p=$(dirname "$p"); done; df -Pk "$p" | tail -n1'
            for p in paths
        )
    )
    res = ctx.run(script, sudo=False)
    lines = res.stdout.splitlines()
    try:
        cpus = int(lines[0])
        mem_mib = int(lines[1].split()[1]) // 1024
        disks = [(p, int(line.split()[3]) / 1024**2, line.split()[5]) for p, line in zip(paths, lines[2:], strict=True)]
    except (IndexError, ValueError):
        return CallResult(False, f"could not read CPU/memory/disk: {res.output}")
    facts = [f"{cpus} CPU", f"{mem_mib / 1024:.1f} GiB memory"] + [f"{free:.1f} GiB free on {mnt} (for {p})"
                                                                  for p, free, mnt in disks]
    errors, warnings = [], []
    if mem_mib < MIN_MEM_MIB:
        errors.append(f"only {mem_mib} MiB memory (need at least {MIN_MEM_MIB} MiB)")
    elif mem_mib < WARN_MEM_MIB:
        warnings.append(f"{mem_mib} MiB memory is little for user servers")
    for p, free, mnt in disks:
        if free < MIN_DISK_GIB:
            errors.append(f"only {free:.1f} GiB free on {mnt} for {p} (need {MIN_DISK_GIB:g} GiB): not enough disk")
        elif free < WARN_DISK_GIB:
            warnings.append(f"{free:.1f} GiB free on {mnt} is little for images")
    if cpus < 2:
        warnings.append("1 CPU")
    summary = ", ".join(facts)
    if errors:
        return CallResult(False, "; ".join(errors) + f" ({summary})")
    return CallResult(True, summary + (f"; warning: {'; '.join(warnings)}" if warnings else ""))


@register("preflight_network")
def preflight_network(ctx: StepContext) -> CallResult:
    """The internal IP this host uses toward the hub, and that the route exists."""
    ip = ctx.facts.ips.get(ctx.host.name, "")
    if _is_hub(ctx):
        return CallResult(True, f"hub internal IP {ip} (cluster subnet {ctx.facts.subnet or 'unknown'})")
    res = ctx.run(f"ip -4 -o route get {shlex.quote(_hub_ip(ctx))}", sudo=False)
    m = re.search(r"\bsrc (\S+)", res.stdout)
    if not res.ok or not m:
        return CallResult(False, f"no route to the hub's internal IP {_hub_ip(ctx)}: {res.output}")
    return CallResult(True, f"internal IP {m.group(1)} toward the hub {_hub_ip(ctx)}")


def clock_skew(ctx: StepContext) -> tuple[float, float]:
    """(host clock - admin clock, uncertainty) in seconds, halving the round trip."""
    t0 = time.time()
    res = ctx.run("date +%s.%N", sudo=False)
    t1 = time.time()
    remote = float(res.stdout.strip())
    return remote - (t0 + t1) / 2, (t1 - t0) / 2


@register("preflight_clock")
def preflight_clock(ctx: StepContext) -> CallResult:
    """Clocks agree with the admin machine: TLS certificates and swarm's raft both need it."""
    try:
        skew, err = clock_skew(ctx)
    except ValueError:
        return CallResult(False, "could not read the clock (date +%s.%N)")
    text = f"clock {skew:+.2f} s from this machine (±{err:.2f} s)"
    if abs(skew) - err > CLOCK_FAIL_S:
        return CallResult(False, f"{text}: clock skew over {CLOCK_FAIL_S:g} s")
    if abs(skew) - err > CLOCK_WARN_S:
        return CallResult(True, f"{text}; warning: clock skew over {CLOCK_WARN_S:g} s, enable NTP")
    return CallResult(True, text)


# The hub side: end a listener a killed run left behind (by the PID it wrote, if its command
# line is ours), bind what is free among the swarm ports, say which, then serve in the background
# for a while (accept and drop) so nodes can probe before Docker listens there. TTL 0: only stop.
LISTENER_MARK = "hubwizard-preflight-listener"
LISTENER_PIDFILE = "$HOME/.hubwizard-preflight-listener.pid"
_LISTENER = r"""
import os, select, signal, socket, sys, time
mark, pidfile, ttl = sys.argv[1], sys.argv[2], float(sys.argv[3])
tcp = [int(p) for p in sys.argv[4].split(",")]; udp = [int(p) for p in sys.argv[5].split(",")]
def stop_previous():
    try:
        pid = int(open(pidfile).read().strip())
        if mark.encode() not in open("/proc/%d/cmdline" % pid, "rb").read():
            return
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    for _ in range(50):
        try:
            if open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0] == "Z":
                return
        except OSError:
            return
        time.sleep(0.1)
stop_previous()
if ttl <= 0:
    print("stopped"); sys.exit(0)
socks, bound = [], []
for kind, ports in ((socket.SOCK_STREAM, tcp), (socket.SOCK_DGRAM, udp)):
    for port in ports:
        s = socket.socket(socket.AF_INET, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            s.close(); continue
        if kind == socket.SOCK_STREAM:
            s.listen(64)
        socks.append(s); bound.append("%d/%s" % (port, "tcp" if kind == socket.SOCK_STREAM else "udp"))
child = os.fork() if socks else 0
if child or not socks:
    if child:
        try:
            with open(pidfile, "w") as f:
                f.write("%d\n" % child)
        except OSError:
            pass
    print(" ".join(bound)); sys.stdout.flush()
    os._exit(0)
os.setsid()
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
end = time.time() + ttl
while time.time() < end:
    ready, _, _ = select.select(socks, [], [], 0.5)
    for s in ready:
        try:
            if s.type == socket.SOCK_STREAM:
                s.accept()[0].close()
            else:
                s.recvfrom(2048)
        except OSError:
            pass
"""

# The node side: TCP connect, and for UDP a datagram that only an ICMP "port unreachable" answers.
_PROBE = r"""
import json, socket, sys
hub = sys.argv[1]; tcp = [int(p) for p in sys.argv[2].split(",")]; udp = [int(p) for p in sys.argv[3].split(",")]
out = {}
for port in tcp:
    try:
        socket.create_connection((hub, port), timeout=3).close(); out["%d/tcp" % port] = "open"
    except ConnectionRefusedError:
        out["%d/tcp" % port] = "refused"
    except OSError as exc:
        out["%d/tcp" % port] = "no answer (%s)" % (exc.__class__.__name__,)
for port in udp:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.0)
    verdict = "not refused"
    try:
        s.connect((hub, port))
        for _ in range(2):
            s.send(b"hubwizard preflight")
            try:
                s.recv(64)
            except socket.timeout:
                pass
    except ConnectionRefusedError:
        verdict = "refused"
    except OSError as exc:
        verdict = "error (%s)" % exc
    out["%d/udp" % port] = verdict
print(json.dumps(out))
"""


def _ports_arg(ports: tuple[int, ...]) -> str:
    return ",".join(str(p) for p in ports)


def _listener_command(ttl: float) -> str:
    """The shell line that (re)starts the hub's temporary listener, or with ttl 0 only stops it."""
    return (f"command -v python3 >/dev/null || {{ echo 'no python3'; exit 3; }}; "
            f"python3 -c {shlex.quote(_LISTENER)} {LISTENER_MARK} \"{LISTENER_PIDFILE}\" "
            f"{ttl:g} {_ports_arg(SWARM_TCP)} {_ports_arg(SWARM_UDP)}")


def ensure_hub_listener(ctx: StepContext) -> str:
    """Open the temporary listener on the hub once per run (while it lives); say what it bound.

    A listener a killed run left behind is ended first: it would hold the TCP ports and then
    expire between this run's bind and its probe, which reads as 'refused'.
    """
    with ctx.state.lock:
        info = ctx.state.data.get("preflight_listener")
        if info and info["until"] > time.time() + 10:
            return info["bound"]
        hub = ctx.reach(ctx.site.hub_host.name)
        res = hub.run(_listener_command(LISTENER_TTL_S), sudo=False, timeout=30)
        bound = res.stdout.strip() if res.ok else f"(no temporary listener: {res.output.strip()})"
        ctx.state.data["preflight_listener"] = {"until": time.time() + LISTENER_TTL_S, "bound": bound}
        return bound


def stop_hub_listener(ctx: StepContext) -> None:
    """End the hub's temporary listener (this run's or a killed run's) so Docker can bind 2377."""
    with ctx.state.lock:
        ctx.state.data.pop("preflight_listener", None)
        ctx.reach(ctx.site.hub_host.name).run(_listener_command(0), sudo=False, timeout=30)


def _hub_ports(ctx: StepContext) -> CallResult:
    """On the hub: who holds the swarm ports (dockerd, nothing, or something in the way)."""
    res = ctx.run("ss -H -lntup 2>/dev/null || ss -lntup", sudo=True)
    held = {}
    for line in res.stdout.splitlines():
        cols = line.split()
        if len(cols) < 5:
            continue
        port = cols[4].rsplit(":", 1)[-1]
        proto = cols[0]
        m = re.search(r'\(\("([^"]+)"', line)
        held[f"{port}/{proto}"] = m.group(1) if m else "kernel"
    parts, blocked = [], []
    for proto, ports in (("tcp", SWARM_TCP), ("udp", SWARM_UDP)):
        for number in ports:
            who = held.get(f"{number}/{proto}")
            parts.append(f"{number}/{proto} {who or 'free'}")
            if who and who not in ("dockerd", "kernel", "python3"):
                blocked.append(f"{number}/{proto} is held by {who}")
    if blocked:
        return CallResult(False, "; ".join(blocked) + ": swarm needs these ports (port in use)")
    return CallResult(True, ", ".join(parts))


@register("preflight_ports")
def preflight_ports(ctx: StepContext) -> CallResult:
    """Swarm ports of the hub reachable from this node (UDP: only 'not refused' can be known)."""
    if _is_hub(ctx):
        return _hub_ports(ctx)
    bound = ensure_hub_listener(ctx)
    hub = _hub_ip(ctx)
    res = ctx.run(
        f"command -v python3 >/dev/null || {{ echo 'no python3'; exit 3; }}; "
        f"python3 -c {shlex.quote(_PROBE)} {shlex.quote(hub)} {_ports_arg(SWARM_TCP)} {_ports_arg(SWARM_UDP)}",
        sudo=False,
        timeout=60,
    )
    if res.exit_code == 3:
        return _bash_tcp_probe(ctx, hub)
    try:
        verdicts: dict[str, str] = json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return CallResult(False, f"port probe failed: {res.output}")
    bad = {k: v for k, v in verdicts.items() if v not in ("open", "not refused")}
    listener = f" (temporary listener on the hub for: {bound})" if bound and not bound.startswith("(") else ""
    text = ", ".join(f"{k} {v}" for k, v in verdicts.items())
    if bad:
        return CallResult(False, f"to hub {hub}: {text}{listener}: swarm port blocked or nothing listening")
    return CallResult(True, f"to hub {hub}: {text}{listener}; UDP can only be checked as 'not refused'")


def _bash_tcp_probe(ctx: StepContext, hub: str) -> CallResult:
    """No python3 on the node: TCP through bash's /dev/tcp; UDP cannot be checked then."""
    verdicts = {}
    for port in SWARM_TCP:
        res = ctx.run(f"timeout 3 bash -c {shlex.quote(f'exec 3<>/dev/tcp/{hub}/{port}')}", sudo=False)
        verdicts[f"{port}/tcp"] = "open" if res.ok else "closed"
    text = ", ".join(f"{k} {v}" for k, v in verdicts.items())
    ok = all(v == "open" for v in verdicts.values())
    suffix = "" if ok else ": swarm port blocked or nothing listening"
    return CallResult(ok, f"to hub {hub}: {text}; UDP not checked (no python3 on this host){suffix}")


# ---------------------------------------------------------------- docker


@register("docker_version")
def docker_version(ctx: StepContext) -> CallResult:
    """dockerd answers `docker info`, and is at least cfg.docker.min_version."""
    res = ctx.run("docker info --format '{{.ServerVersion}}'", sudo=True)
    have = res.stdout.strip()
    if not res.ok or not have:
        return CallResult(False, f"docker info does not answer: {res.output or 'exit ' + str(res.exit_code)}")
    want = ctx.site.docker.min_version
    try:
        ok = version_at_least(have, want)
    except ValueError:
        return CallResult(False, f"cannot read the Docker version {have!r}")
    if not ok:
        return CallResult(False, f"Docker {have} is older than the minimum {want}: docker too old")
    return CallResult(True, f"Docker {have} (>= {want})")


@register("docker_group")
def docker_group(ctx: StepContext) -> CallResult:
    """With [docker] admin_in_docker_group, a non-root admin is in the docker group. Off (the
    default), nothing is asked: hubwizard reaches Docker through sudo, and the group is root
    without sudo, so a user found in it is named with the command that takes it out."""
    user = ctx.host.user
    if user == "root":
        return CallResult(True, "admin is root")
    res = ctx.run(f"id -nG {shlex.quote(user)}", sudo=False)
    member = "docker" in res.stdout.split()
    if not ctx.site.docker.admin_in_docker_group:
        return CallResult(True, f"{user} is in the docker group (root without sudo; not asked by the site: "
                          f"`sudo gpasswd -d {user} docker` takes it out)" if member
                          else f"{user} is not in the docker group (hubwizard uses sudo)")
    if member:
        return CallResult(True, f"{user} is in the docker group ([docker] admin_in_docker_group = true)")
    return CallResult(False, f"{user} is not in the docker group")


# ---------------------------------------------------------------- storage


@register("nfs_implementation")
def nfs_implementation(ctx: StepContext) -> CallResult:
    """Pick kernel nfsd or nfs-ganesha for this host and remember it for the step's items.

    ``auto`` takes the kernel server when the kernel has nfsd (/proc/fs/nfsd, or the module
    exists); otherwise the userspace nfs-ganesha. The choice goes to ``state.nfs_impl``.
    """
    wanted = ctx.site.storage.implementation
    path = ctx.site.storage.path
    fs = ctx.run(f'p={shlex.quote(path)}; while [ ! -e "$p" ]; do p=$(dirname "$p"); done; stat -f -c %T "$p"',
                 sudo=False).stdout.strip()
    if fs in UNEXPORTABLE_FS:
        return CallResult(False, f"{path} is on {fs}, which NFS cannot export (no file handles): "
                                 "put storage.path on a real filesystem (a disk or volume)")
    # /proc/fs/nfsd can exist empty on a kernel without nfsd: the filesystem list, a populated
    # /proc/fs/nfsd, or a module on disk is what shows a kernel NFS server.
    res = ctx.run("grep -qw nfsd /proc/filesystems || [ -n \"$(ls -A /proc/fs/nfsd 2>/dev/null)\" ] || "
                  "modinfo nfsd >/dev/null 2>&1 || find /lib/modules/$(uname -r) -name 'nfsd.ko*' 2>/dev/null | grep -q .",
                  sudo=True)
    kernel = res.ok
    if wanted == "auto":
        impl = "kernel" if kernel else "ganesha"
        why = "the kernel has nfsd" if kernel else "the kernel has no NFS server: userspace nfs-ganesha"
    else:
        impl, why = wanted, f"storage.implementation = {wanted!r}"
    with ctx.state.lock:
        ctx.state.data["nfs_impl"] = impl
    if impl == "kernel" and not kernel:
        return CallResult(False, "storage.implementation = 'kernel' but this kernel has no NFS server (no nfsd); "
                                 "set implementation = 'ganesha' or 'auto'")
    return CallResult(True, f"{impl} ({why})")


def kernel_config_value(ctx: StepContext, option: str) -> str | None:
    """'y', 'm', 'n' (is not set) or None when the kernel config cannot be read."""
    res = ctx.run(
        f"(zcat /proc/config.gz 2>/dev/null || cat /boot/config-$(uname -r) 2>/dev/null) | grep -E "
        f"{shlex.quote(f'^(# )?{option}[= ]')}",
        sudo=False,
    )
    line = res.stdout.strip()
    if not line:
        return None
    return "n" if line.startswith("#") else line.split("=", 1)[1]


@register("quota_support")
def quota_support(ctx: StepContext) -> CallResult:
    """storage.path is on XFS mounted with project quotas, and the kernel enforces them.

    Everything missing is listed at once, with its fix: a kernel without XFS quota
    support, a filesystem that is not XFS, an XFS mount without pquota/prjquota.
    """
    path = ctx.site.storage.path
    q = shlex.quote(path)
    res = ctx.run(
        f'p={q}; while [ ! -e "$p" ]; do p=$(dirname "$p"); done; '
        f'stat -f -c %T "$p"; findmnt -n -o TARGET,FSTYPE,OPTIONS,SOURCE --target "$p"',
        sudo=False,
    )
    lines = res.stdout.splitlines()
    if len(lines) < 2:
        return CallResult(False, f"cannot tell which filesystem holds {path}: {res.output}")
    target, fstype, options, source = (lines[1].split() + ["", "", "", ""])[:4]
    opts = set(options.split(","))
    missing = []
    xfs_quota = kernel_config_value(ctx, "CONFIG_XFS_QUOTA")
    if xfs_quota == "n":
        missing.append(f"the kernel ({_uname(ctx)}) has no XFS quota support (CONFIG_XFS_QUOTA is not set): "
                       "quotas cannot be enforced on this host; boot a distribution kernel, or set quotas.enabled = false")
    if fstype != "xfs":
        missing.append(f"{path} is on {target} ({fstype}, from {source}), not XFS: put {path} on an XFS filesystem "
                       f"mounted with pquota (mkfs.xfs DEVICE; in /etc/fstab: 'DEVICE {path} xfs defaults,pquota 0 2')")
    elif not opts & {"prjquota", "pquota", "pqnoenforce"}:
        if target == "/":
            fix = "add rootflags=pquota to GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub and reboot"
        else:
            fix = f"add pquota to the options of {target} in /etc/fstab, then umount and mount {target} (remount cannot)"
        missing.append(f"{target} (XFS) is mounted without project quotas ({options}): {fix}")
    if missing:
        return CallResult(False, "XFS project quotas unavailable: " + "; ".join(missing))
    support = "CONFIG_XFS_QUOTA=" + xfs_quota if xfs_quota else "kernel config unreadable, mount accepted pquota"
    return CallResult(True, f"{path} on {target} (xfs, {source}) with project quotas ({support})")


def _uname(ctx: StepContext) -> str:
    return ctx.run("uname -r", sudo=False).stdout.strip() or "?"
