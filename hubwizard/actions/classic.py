"""Calls of the classic (legacy Swarm) track: TLS material, lab stand-ins, and checks that
compare hosts (same UIDs everywhere, a node ready to be cloned, the autofs mount).

Why Python here: the certificates are made on the admin machine (the CA key never leaves
it) and compared with what each host has; the UID check compares every host with the hub;
the stand-ins need the registry password on stdin. The commands that a 2016 admin typed
(`swarm manage`, `swarm join`, consul) stay in the recipes, readable as the tutorial.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import shlex
import threading
from pathlib import Path

from hubwizard.actions import classic_clone, tls
from hubwizard.core.config import Host, Site
from hubwizard.core.events import CommandStarted, OutputLine
from hubwizard.core.render import PATHS, SWARM_MANAGER_PORT
from hubwizard.engine.calls import CallResult, StepContext, register

TLS_DIR = PATHS["docker_tls"]  # ca.pem, server-cert.pem, server-key.pem
CLIENT_DIR = PATHS["docker_tls_client"]  # the hub's client cert
MANAGER_CERT, MANAGER_KEY = "manager-cert.pem", "manager-key.pem"  # in TLS_DIR, on the hub only
CONSUL = "consul"  # container names, as in the tutorial
MANAGER = "swarm-manager"
AGENT = "swarm-agent"
STAND_IN_LABEL = "io.hubwizard.stand-in"
_CA_LOCK = threading.Lock()


# ----------------------------------------------------------------------- shared helpers


def docker_port(site: Site) -> int:
    """2376 with TLS; 2375 only when plain TCP was explicitly allowed."""
    return 2376 if site.classic.docker_tls else 2375


def client_flags(site: Site) -> str:
    """docker CLI flags that present the hub's client certificate (empty on plain TCP)."""
    if not site.classic.docker_tls:
        return ""
    return (f"--tlsverify --tlscacert={CLIENT_DIR}/ca.pem --tlscert={CLIENT_DIR}/cert.pem "
            f"--tlskey={CLIENT_DIR}/key.pem")


def manager_cli(site: Site, hub_ip: str) -> str:
    """`docker -H tcp://HUB:4000 ...`: the CLI aimed at the Swarm manager, run on the hub."""
    return f"docker -H tcp://{shlex.quote(hub_ip)}:{SWARM_MANAGER_PORT} {client_flags(site)}".rstrip()


def _sans(host: Host, host_ip: str) -> tuple[list[str], list[str]]:
    """IPs and names a host's Docker endpoint is reached by: its internal IP first."""
    ips, names = [host_ip], [host.name]
    for value in (host.internal_address, host.address):
        if not value:
            continue
        try:
            ipaddress.ip_address(value)
            ips.append(value)
        except ValueError:
            names.append(value)
    return list(dict.fromkeys(ips)), list(dict.fromkeys(names))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _remote_sha(ctx: StepContext, paths: list[str]) -> dict[str, str]:
    res = ctx.run("sha256sum " + " ".join(shlex.quote(p) for p in paths) + " 2>/dev/null || true")
    out = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[1]] = parts[0]
    return out


def host_files(ctx: StepContext) -> dict[str, tuple[bytes, int]]:
    """What this host must hold: its server cert and key, the CA cert; the hub also the client cert."""
    state_dir = ctx.state.data.get("state_dir")
    if not state_dir:
        raise RuntimeError("the engine did not pass state_dir: cannot find the site's TLS folder")
    ca = tls.site_ca(state_dir, ctx.site.site.name)
    ips, names = _sans(ctx.host, ctx.template_context.get("host_ip") or ctx.host.address)
    is_hub = ctx.host.name == ctx.site.hub_host.name
    is_manager = ctx.host.name in [h.name for h in ctx.site.manager_hosts]
    with _CA_LOCK:
        ca.ensure()
        server = tls.leaf(ca, ctx.host.name, ips=ips, dns=names, role=tls.SERVER)
        client = tls.leaf(ca, "client", role=tls.CLIENT) if is_hub else None
        # the replica's own: its names are the node's, so "manager" is the hub's file name only
        label = "manager" if is_hub else f"manager-{ctx.host.name}"
        manager = tls.leaf(ca, label, ips=ips, dns=names, role=tls.MANAGER) if is_manager else None
    files = {f"{TLS_DIR}/ca.pem": (server.ca, 0o644), f"{TLS_DIR}/server-cert.pem": (server.cert, 0o644),
             f"{TLS_DIR}/server-key.pem": (server.key, 0o600)}
    if client is not None:
        # only the hub and a replica manager's node hold certificates that act as a client (issue
        # 12 item 5): the CLI's and JupyterHub's (hub only), and the one `swarm manage` serves
        # :4000 with and presents to the nodes
        files |= {f"{CLIENT_DIR}/ca.pem": (client.ca, 0o644), f"{CLIENT_DIR}/cert.pem": (client.cert, 0o644),
                  f"{CLIENT_DIR}/key.pem": (client.key, 0o600)}
    if manager is not None:
        files |= {f"{TLS_DIR}/{MANAGER_CERT}": (manager.cert, 0o644), f"{TLS_DIR}/{MANAGER_KEY}": (manager.key, 0o600)}
    return files


# ----------------------------------------------------------------------- TLS


@register("classic_tls_certs")
def classic_tls_certs(ctx: StepContext, check: bool = False) -> CallResult:
    """Issue (locally, from the site CA) and upload this host's Docker TLS files.

    With ``check``: only compare; passes when every file is there with the right content.
    """
    site = ctx.site
    if not site.classic.docker_tls:
        if site.classic.allow_plain_tcp:
            return CallResult(False, f"WARNING: Docker listens on plain TCP {docker_port(site)} without TLS "
                              "([classic] docker_tls = false, allow_plain_tcp = true): anyone on the cluster "
                              "network controls Docker on every host. No certificates are made.", skipped=True)
        return CallResult(False, "[classic] docker_tls = false without allow_plain_tcp = true: the classic "
                          "track needs Docker on TCP; set docker_tls = true (recommended)")
    files = host_files(ctx)
    have = _remote_sha(ctx, list(files))
    stale = [p for p, (data, _) in files.items() if have.get(p) != _sha(data)]
    if check:
        return CallResult(not stale, "up to date" if not stale else f"differs or missing: {', '.join(stale)}")
    for path in stale:
        data, mode = files[path]
        ctx.emit(CommandStarted(ctx.step, ctx.host.name, "apply", f"write {path} (mode {mode:o})"))
        ctx.transport.put(data, path, mode=mode, sudo=True)
    ctx.run(f"chmod 700 {TLS_DIR} && chmod 600 {TLS_DIR}/*-key.pem")
    return CallResult(True, f"{len(stale)} file(s) written" if stale else "up to date", changed=bool(stale))


def _curl_ping(ctx: StepContext, ip: str, port: int, with_cert: bool) -> tuple[bool, str]:
    """From the hub: GET /_ping on ip:port, verifying the server against the site CA."""
    cert = f" --cert {CLIENT_DIR}/cert.pem --key {CLIENT_DIR}/key.pem" if with_cert else ""
    cmd = (f"curl -sS --max-time 10 --cacert {CLIENT_DIR}/ca.pem{cert} "
           f"https://{shlex.quote(ip)}:{port}/_ping")
    hub = ctx.connections.get(ctx.site.hub_host.name) if ctx.connections else ctx.transport
    res = hub.run(cmd, sudo=True, timeout=30)
    return res.ok and res.stdout.strip() == "OK", res.output


@register("classic_tls_verify")
def classic_tls_verify(ctx: StepContext) -> CallResult:
    """From the hub: this host's Docker port answers with the client cert, refuses without it."""
    ip = ctx.template_context.get("host_ip") or ctx.host.address
    port = docker_port(ctx.site)
    ok, out = _curl_ping(ctx, ip, port, with_cert=True)
    if not ok:
        return CallResult(False, f"https://{ip}:{port}/_ping with the hub's client certificate failed: {out}")
    refused, out2 = _curl_ping(ctx, ip, port, with_cert=False)
    if refused:
        return CallResult(False, f"https://{ip}:{port} answered a client WITHOUT a certificate: tlsverify is off")
    return CallResult(True, f"{ip}:{port}: client cert accepted; without it refused ({out2.splitlines()[-1][:120]})")


# ----------------------------------------------------------------------- lab stand-ins

_CONSUL_STAND_IN = (
    "mkdir -p /srv/v1/status && printf '\"%s:8300\"' \"$LEADER_IP\" > /srv/v1/status/leader && "
    "printf '%s' \"$PEERS\" > /srv/v1/status/peers && "
    "exec python3 -m http.server 8500 --bind \"$BIND_IP\" --directory /srv"
)
STAND_IN_PROGRAM = Path(__file__).with_name("swarm_stand_in.py")  # the lab's `swarm manage`
STAND_IN_ON_HUB = "/srv/hubwizard/swarm-stand-in.py"
STAND_IN_SPEC = "io.hubwizard.stand-in-spec"


def stand_in_nodes(site: Site, ips: dict[str, str]) -> str:
    """NODES for the manager stand-in: each node's Docker endpoint (the hub's when there is none)."""
    port = docker_port(site)
    hosts = site.nodes or [site.hub_host]
    return ",".join(f"{h.name}={ips.get(h.name, h.address)}:{port}" for h in hosts)


def stand_in_peers(site: Site, ips: dict[str, str]) -> str:
    """PEERS for the manager stand-in: every manager's :4000, the hub first (empty: no replica)."""
    managers = site.manager_hosts
    if len(managers) < 2:
        return ""
    return ",".join(f"{h.name}={ips.get(h.name, h.address)}:{SWARM_MANAGER_PORT}" for h in managers)


def consul_peers(site: Site, ips: dict[str, str]) -> list[str]:
    """Every Consul server's raft address (IP:8300), the hub first, as /v1/status/peers lists them."""
    return [f"{ips.get(h.name, h.address)}:8300" for h in site.consul_hosts]


def stand_in_command(site: Site, role: str, bind_ip: str, nodes: str = "", *, peers: str = "",
                     self_name: str = "") -> str:
    """The `docker run` of a lab stand-in (role: consul | manager), from the hub base image,
    serving on ``bind_ip`` (the hub's, or a node's for a second Consul server or the replica).

    consul: ``peers`` is the JSON list of every server, the first one the (static) leader.
    manager: hubwizard's swarm_stand_in.py (uploaded to the host) with the manager's certificate:
    it places containers on the nodes' engines as `swarm manage` does; ``peers`` lists every
    manager for its replication (`--replication`), ``self_name`` is this one."""
    name = CONSUL if role == "consul" else MANAGER
    if role == "consul":
        server_list = peers or f'["{bind_ip}:8300"]'
        leader = server_list.split('"')[1].rsplit(":", 1)[0]
        env = f"-e LEADER_IP={shlex.quote(leader)} -e PEERS={shlex.quote(server_list)} "
        extra, script = "", _CONSUL_STAND_IN
    else:
        env = f"-e PEERS={shlex.quote(peers)} -e SELF={shlex.quote(self_name)} " if peers else ""
        extra = (f"-v {TLS_DIR}:/certs:ro -v {STAND_IN_ON_HUB}:/stand-in.py:ro "
                 f"-e NODES={shlex.quote(nodes)} -e PORT={SWARM_MANAGER_PORT} ")
        script = "exec python3 /stand-in.py"
    spec = _sha((env + extra + script + (STAND_IN_PROGRAM.read_text() if role == "manager" else "")).encode())[:12]
    return (f"docker run -d --name {name} --restart always --network host --label {STAND_IN_LABEL}={role} "
            f"--label {STAND_IN_SPEC}={spec} -e BIND_IP={shlex.quote(bind_ip)} -e DOCKER_PORT={docker_port(site)} "
            f"{env}{extra}{shlex.quote(site.images.hub_base)} sh -c {shlex.quote(script)}")


def wanted_stand_in(ctx: StepContext, role: str) -> str:
    """The stand-in command for this host: its own address; the site's servers and managers."""
    ips = ctx.facts.ips
    bind = ips.get(ctx.host.name) or (ctx.facts.hub_ip if ctx.host.name == ctx.site.hub_host.name
                                      else ctx.host.address)
    if role == "consul":
        servers = consul_peers(ctx.site, ips)
        return stand_in_command(ctx.site, role, bind, peers="[" + ",".join(f'"{s}"' for s in servers) + "]")
    return stand_in_command(ctx.site, role, bind, stand_in_nodes(ctx.site, ips),
                            peers=stand_in_peers(ctx.site, ips), self_name=ctx.host.name)


def registry_login(ctx: StepContext) -> CallResult | None:
    """docker login to the site's registry (password on stdin); None when it worked or is not needed."""
    reg = ctx.site.registry
    if not reg.username or reg.url == "docker.io":
        return None
    password = ctx.secrets.get("registry_password")
    cmd = f"docker login -u {shlex.quote(reg.username)} --password-stdin {shlex.quote(reg.url)}"
    ctx.emit(CommandStarted(ctx.step, ctx.host.name, "apply", cmd))
    res = ctx.run(cmd, stdin=(password or "") + "\n")
    return None if res.ok else CallResult(False, f"{cmd}: {res.output}")


@register("classic_stand_in")
def classic_stand_in(ctx: StepContext, role: str, check: bool = False) -> CallResult:
    """LAB ONLY ([classic] lab_stand_ins = true): run a stand-in where the classic images cannot
    be pulled. consul: a static Consul status endpoint; manager: hubwizard's swarm_stand_in.py on
    :4000, which places containers on the nodes' real engines and lists them as `swarm manage`
    does (from a static node list: no Consul discovery, no agents). With ``check``: only whether
    the stand-in runs as apply would start it now."""
    if role == "agent":
        return CallResult(False, "cannot run here: no swarm image to run `swarm join` (lab stand-ins); the "
                          "stand-in manager reaches the nodes' engines from a static list instead", skipped=True)
    if role == "manager" and not ctx.site.classic.docker_tls:
        return CallResult(False, "the lab's stand-in manager needs [classic] docker_tls = true (it uses the "
                          "manager's certificate to reach the nodes)")
    name = CONSUL if role == "consul" else MANAGER
    want = wanted_stand_in(ctx, role)
    spec = want.split(f"{STAND_IN_SPEC}=", 1)[1].split()[0]
    fmt = " ".join(["{{.State.Running}}", *(f'{{{{index .Config.Labels "{k}"}}}}' for k in (STAND_IN_LABEL, STAND_IN_SPEC))])
    state = ctx.run(f"docker inspect -f {shlex.quote(fmt)} {name} 2>/dev/null")
    if state.stdout.split() == ["true", role, spec]:
        return CallResult(True, f"stand-in {name} runs (spec {spec})")
    if check:
        return CallResult(False, f"stand-in {name} is not running with spec {spec}")
    failed = registry_login(ctx)
    if failed:
        return failed
    if role == "manager":
        ctx.emit(CommandStarted(ctx.step, ctx.host.name, "apply", f"write {STAND_IN_ON_HUB}"))
        ctx.transport.put(STAND_IN_PROGRAM.read_bytes(), STAND_IN_ON_HUB, mode=0o644, sudo=True)
    for cmd in (f"docker rm -f {name} >/dev/null 2>&1 || true", want):
        ctx.emit(CommandStarted(ctx.step, ctx.host.name, "apply", cmd))
        res = ctx.run(cmd, timeout=600)
        if not res.ok:
            return CallResult(False, f"{cmd}\n{res.output}")
    return CallResult(True, f"stand-in {name} started (lab only: the real image {_image(ctx.site, role)} "
                      "cannot be pulled here)", changed=True)


def _image(site: Site, role: str) -> str:
    return site.classic.consul_image if role == "consul" else site.classic.swarm_image


# ----------------------------------------------------------------------- the manager's view


def parse_classic_info(text: str) -> dict:
    """`docker -H :4000 info` of a standalone Swarm manager -> role, primary, and its nodes.

    The node list is plain text ("Nodes: 3" then " name: addr" and "  └ Status: Healthy"
    lines), and `docker -H :4000 ps` answers "No elected primary cluster manager" when the
    replicated managers cannot elect a primary through Consul.
    """
    info: dict = {"no_primary": "No elected primary cluster manager" in text, "role": "", "primary": "",
                  "nodes": [], "node_count": None}
    current: dict | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if stripped.startswith("└"):
            if current is not None:
                key, _, value = stripped.lstrip("└ ").partition(":")
                current[key.strip().lower()] = value.strip()
            continue
        one_space = line.startswith(" ") and not line.startswith("  ")
        if info["node_count"] and one_space and ": " in line and len(info["nodes"]) < info["node_count"]:
            name, _, addr = stripped.partition(": ")
            current = {"name": name, "addr": addr}
            info["nodes"].append(current)
            continue
        current = None
        if line.startswith(("Role:", "Primary:")):
            key, _, value = line.partition(":")
            info[key.lower()] = value.strip()
        elif line.startswith("Nodes:"):
            value = line.partition(":")[2].strip()
            info["node_count"] = int(value) if value.isdigit() else None
    return info


@register("classic_cluster_nodes")
def classic_cluster_nodes(ctx: StepContext) -> CallResult:
    """The manager's `info` lists every node of the site, Healthy."""
    if ctx.site.classic.lab_stand_ins:
        return CallResult(False, "cannot check here: the lab's stand-in manager has a static node list, not "
                          "the agents' registrations in Consul that `swarm manage` reports", skipped=True)
    res = ctx.run(f"{manager_cli(ctx.site, ctx.facts.hub_ip)} info", timeout=60)
    info = parse_classic_info(res.output)
    if info["no_primary"]:
        return CallResult(False, "No elected primary cluster manager: Consul is broken (hubwizard doctor --fix)")
    problems = node_problems(info, {h.name: ctx.facts.ips.get(h.name, h.address) for h in ctx.site.nodes})
    return CallResult(not problems, "\n".join(problems) or f"{len(info['nodes'])} node(s), all healthy")


def node_problems(info: dict, nodes: dict[str, str]) -> list[str]:
    """Lines for each site node missing from the manager's list or not Healthy there."""
    problems = []
    for name, ip in nodes.items():
        found = next((n for n in info["nodes"] if n["addr"].split(":")[0] == ip or n["name"] == name), None)
        if found is None:
            problems.append(f"{name} ({ip}) is missing from the cluster")
        elif found.get("status", "Healthy") != "Healthy":
            error = found.get("error", "")
            problems.append(f"{name} ({found['addr']}) is {found.get('status')}" + (f": {error}" if error else ""))
    return problems


# ----------------------------------------------------------------------- NFS and autofs


def kernel_has(ctx_run, fs: str) -> bool:
    """Whether the kernel knows filesystem ``fs`` now or after loading its module."""
    res = ctx_run(f"grep -qw {shlex.quote(fs)} /proc/filesystems || modprobe -q {shlex.quote(fs)} 2>/dev/null "
                  f"&& grep -qw {shlex.quote(fs)} /proc/filesystems")
    return res.ok


@register("classic_exportfs")
def classic_exportfs(ctx: StepContext, check: bool = False) -> CallResult:
    """Publish /etc/exports.d with `exportfs -ra` where the kernel has an NFS server
    (with ``check``: only whether /home is exported)."""
    if not kernel_has(ctx.run, "nfsd"):
        return CallResult(False, "cannot export here: the kernel has no NFS server (nfsd); the export file is "
                          "written and takes effect on a host whose kernel has one", skipped=True)
    if check:
        # exportfs lists /etc/exports.d even while nfsd is stopped: the server must also run
        res = ctx.run("systemctl is-active --quiet nfs-kernel-server && exportfs -v | grep -q '^/home'")
        return CallResult(res.ok, "/home is exported (nfs-kernel-server runs)" if res.ok else
                          "/home is not exported, or nfs-kernel-server is not running")
    res = ctx.run("command -v exportfs >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                  "nfs-kernel-server; systemctl enable --now nfs-kernel-server && exportfs -ra && exportfs -v",
                  timeout=600)
    return CallResult(res.ok, res.output, changed=res.ok)


@register("classic_home_mount")
def classic_home_mount(ctx: StepContext) -> CallResult:
    """`ls /home/USER` on this node shows the hub's files (through autofs and NFS)."""
    if not kernel_has(ctx.run, "nfs"):
        return CallResult(False, "cannot check on this host: kernel has no NFS client", skipped=True)
    hub = ctx.reach(ctx.site.hub_host.name)
    users = site_users(ctx.site) or _home_users(hub)
    if not users:
        return CallResult(False, "no user folder in the hub's /home to compare", skipped=True)
    user = shlex.quote(users[0])
    want = hub.run(f"ls -A /home/{user}", sudo=True).stdout.split()
    # as the user: the export squashes root, so root on a node cannot read a 0700 home
    have = ctx.run(f"runuser -u {user} -- ls -A /home/{user}", timeout=60)
    ok = have.ok and sorted(have.stdout.split()) == sorted(want)
    return CallResult(ok, f"/home/{users[0]} on {ctx.host.name}: " + ("same files as on the hub" if ok else
                      f"differs from the hub (hub: {want[:5]}, here as {users[0]}: {have.output[:200]})"))


# ----------------------------------------------------------------------- users, clones


def site_users(site: Site) -> list[str]:
    return list(dict.fromkeys([*site.hub.admin_users, *site.hub.allowed_users]))


def _home_users(transport) -> list[str]:
    res = transport.run("ls -1 /home 2>/dev/null", sudo=True)
    return [u for u in res.stdout.split() if u and not u.startswith(".") and u != "lost+found"]


def parse_passwd(text: str) -> dict[str, tuple[int, int]]:
    """getent passwd lines -> {name: (uid, gid)}."""
    out = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[2].isdigit() and parts[3].isdigit():
            out[parts[0]] = (int(parts[2]), int(parts[3]))
    return out


def uid_mismatches(users: list[str], by_host: dict[str, dict[str, tuple[int, int]]], reference: str) -> list[str]:
    """Human lines for each user whose UID/GID differs from (or is missing next to) the reference host."""
    problems = []
    ref = by_host[reference]
    for user in users:
        if user not in ref:
            problems.append(f"{user}: no such user on {reference}")
            continue
        for host, table in by_host.items():
            if host == reference:
                continue
            if user not in table:
                problems.append(f"{user}: missing on {host} (uid {ref[user][0]} on {reference})")
            elif table[user] != ref[user]:
                problems.append(f"{user}: uid:gid {table[user][0]}:{table[user][1]} on {host}, "
                                f"{ref[user][0]}:{ref[user][1]} on {reference}")
    return problems


@register("classic_uids")
def classic_uids(ctx: StepContext) -> CallResult:
    """Same UID and GID for the site's users on every host (NFS checks numbers, not names)."""
    hub = ctx.site.hub_host.name
    hosts = [h.name for h in ctx.site.active_hosts]
    users = site_users(ctx.site) or _home_users(ctx.reach(hub))
    if not users:
        return CallResult(False, "no users listed ([hub] allowed_users/admin_users) and none in the hub's /home",
                          skipped=True)
    cmd = "getent passwd " + " ".join(shlex.quote(u) for u in users) + " || true"
    by_host = {h: parse_passwd(ctx.reach(h).run(cmd, sudo=False).stdout) for h in hosts}
    problems = uid_mismatches(users, by_host, hub)
    if problems:
        return CallResult(False, "UIDs differ between hosts:\n" + "\n".join(problems))
    return CallResult(True, f"{len(users)} user(s) with the same uid:gid on {len(hosts)} hosts")


def clone_problems(transport) -> list[str]:
    """What must be fixed on a machine before it is snapshotted to make more nodes (tutorial)."""
    problems = []
    res = transport.run("docker ps -aq 2>/dev/null | wc -l", sudo=True)
    count = res.stdout.strip()
    if count.isdigit() and int(count) > 0:
        problems.append(f"{count} container(s) exist: remove them (`docker rm -f $(docker ps -aq)`) "
                        "so clones do not start copies")
    if transport.run("test -e /etc/docker/key.json", sudo=True).ok:
        problems.append("/etc/docker/key.json exists: every clone would share this engine ID and Swarm "
                        "would see one node; remove it (`rm /etc/docker/key.json`) before the snapshot")
    return problems


def engine_id(transport) -> str:
    return classic_clone.engine_id(transport)


@register("classic_engine_id")
def classic_engine_id(ctx: StepContext, check: bool = False) -> CallResult:
    """This engine's ID differs from every other host's; else (a clone that kept its source's
    engine key and containers) the clone recipe: remove the copied containers, stop dockerd,
    remove the key, start dockerd, which makes a new ID (hubwizard.actions.classic_clone)."""
    found = classic_clone.find_clone(ctx.connections, ctx.site, ctx.host.name) if ctx.connections else None
    if found is None:
        return CallResult(True, f"engine ID {engine_id(ctx.transport) or '(dockerd not answering)'} is unique")
    if check:
        return CallResult(False, f"same engine ID as {', '.join(found.same_as)}: a clone that kept "
                          f"/etc/docker/key.json ({len(found.containers)} container(s) came with it)")
    for cmd in found.recipe():
        ctx.emit(CommandStarted(ctx.step, ctx.host.name, "apply", cmd))
        res = ctx.run(cmd, timeout=120)
        if not res.ok:
            return CallResult(False, f"{ctx.host.name}: the clone recipe stopped at `{cmd}`: {res.output[-400:]}")
    new = engine_id(ctx.transport)
    removed = ", ".join(name for _, name in found.containers) or "none"
    return CallResult(True, f"new engine ID {new} (was {found.same_as[0]}'s); cloned containers removed: {removed}",
                      changed=True)


@register("classic_clone_ready")
def classic_clone_ready(ctx: StepContext) -> CallResult:
    """Before a snapshot of this node: no containers, no /etc/docker/key.json."""
    problems = clone_problems(ctx.transport)
    return CallResult(not problems, "ready to clone" if not problems else "\n".join(problems))


# ----------------------------------------------------------------------- lab: what was stood in

STOOD_IN = (
    "classic-consul: a static status endpoint stands in for Consul (no KV, no sessions)",
    "classic-manager, classic-verify `ps -a`, classic-hub, classic-e2e: the manager on :4000 is hubwizard's "
    "stand-in for `swarm manage` (swarm_stand_in.py: the nodes' engines, TLS and certificates are real; "
    "placement and the NODE/NAME listing are the stand-in's)",
    "classic-join, classic-verify's node list: not run (no swarm image for `swarm join`)",
)


@register("classic_stand_ins_report")
def classic_stand_ins_report(ctx: StepContext) -> CallResult:
    """Verify, lab only: say which checks of this verify ran on stand-ins, and where homes were not
    mounted (no NFS client in the nodes' kernels), so a green lab run is read for what it proves.
    Reported as "cannot check here" (skipped): the real thing was not checked."""
    lines = list(STOOD_IN)
    if ctx.site.classic.consul_servers > 1 or ctx.site.classic.replica_manager:
        lines.append("classic-consul-servers, classic-replica-manager, classic-ha: the other Consul servers are "
                     "static pages (no Raft), and the managers elect their primary by polling each other, not "
                     "through a Consul lock")
    if not kernel_has(ctx.run, "nfsd"):
        lines.append("classic-nfs-home: /home not exported (no NFS server in the hub's kernel)")
    nodes = ctx.site.nodes or [ctx.site.hub_host]
    if not all(kernel_has(ctx.reach(h.name).run, "nfs") for h in nodes):
        lines.append("classic-autofs, classic-hub, classic-e2e: no NFS client on the nodes, so /home/USER is "
                     "not mounted in users' servers (their files stay in the container)")
    for line in lines:  # each shown with `verify -v`; the summary below is shown always
        ctx.emit(OutputLine(ctx.step, ctx.host.name, "stdout", line))
    steps = sorted({step for line in lines for step in re.findall(r"classic-[a-z0-9-]+", line.split(":")[0])})
    return CallResult(False, "\n".join(lines) + f"\nran on LAB STAND-INS, not the real thing: {', '.join(steps)} "
                      "(`hubwizard verify -v` says how each was stood in)", skipped=True)
