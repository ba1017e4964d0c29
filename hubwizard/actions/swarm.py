"""Swarm membership and shared-storage actions the recipes call, through the Docker API.

Why the API and not ``docker swarm init|join`` lines: ``init`` prints the worker join
token and ``join`` takes it on its command line, where it would show in the plan, the log
pane, the journal and ``ps`` on the host. Through ``dockerapi.client_for`` (our own SSH
connection) the token goes from the manager's API answer to the node's API request and
is otherwise only in ``Secrets`` (redacted from every event from then on) and the run state.
"""

from __future__ import annotations

import functools
import re
import secrets as pysecrets
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import requests.exceptions

from hubwizard.actions import (
    probes,
    swarm_guard,  # noqa: F401 - registers the swarm guard's calls
)
from hubwizard.actions.quota import parse_report, project_name
from hubwizard.actions.swarm_managers import manager_turn, set_role, wait_reachable, wanted_role
from hubwizard.engine.calls import CallResult, StepContext, register
from hubwizard.remote import dockerapi

SWARM_PORT = 2377
READY_TIMEOUT_S = 60.0
GHOST_WAIT_S = 20.0  # after a join: how long to wait for the manager to list the node's hostname
GRACE_WAIT_S = 150.0  # nfs-ganesha refuses some writes for its grace period (90 s) after a start
WORKER_TOKEN = "swarm_worker_token"
MANAGER_TOKEN = "swarm_manager_token"


def api_call(name: str) -> Callable[[Callable[..., CallResult]], Callable[..., CallResult]]:
    """Register a call that talks to Docker: an engine that does not answer is a failed
    check with a readable reason (e.g. "docker is not installed yet"), never a traceback."""

    def wrap(fn: Callable[..., CallResult]) -> Callable[..., CallResult]:
        @functools.wraps(fn)
        def call(ctx: StepContext, **kwargs: Any) -> CallResult:
            try:
                return fn(ctx, **kwargs)
            except SwarmError as exc:
                return CallResult(False, str(exc))
            except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
                return CallResult(False, f"the Docker API on {ctx.host.name} does not answer "
                                         f"(is dockerd installed and running?): {type(exc).__name__}: {exc}")

        return register(name)(call)

    return wrap


def _swarm_info(client: docker.DockerClient) -> dict[str, Any]:
    return client.info().get("Swarm") or {}


@dataclass(frozen=True)
class SwarmInfo:
    """The manager's view, kept in the run state for the nodes (tokens stay in Secrets)."""

    cluster_id: str
    manager_addr: str  # HUB_IP:2377
    manager_node_id: str


# ---------------------------------------------------------------- the hub (manager)


def _remember_tokens(ctx: StepContext, client: docker.DockerClient, info: dict[str, Any]) -> SwarmInfo:
    """Join tokens into Secrets (redacted from now on) and the swarm's identity into the run state."""
    client.swarm.reload()
    tokens = client.swarm.attrs.get("JoinTokens") or {}
    ctx.secrets.add_runtime(WORKER_TOKEN, tokens.get("Worker", ""))
    ctx.secrets.add_runtime(MANAGER_TOKEN, tokens.get("Manager", ""))
    swarm = SwarmInfo(
        cluster_id=(info.get("Cluster") or {}).get("ID", ""),
        manager_addr=f"{ctx.facts.hub_ip}:{SWARM_PORT}",
        manager_node_id=info.get("NodeID", ""),
    )
    with ctx.state.lock:
        ctx.state.data["swarm"] = swarm
        ctx.state.data["swarm_tokens"] = {"worker": tokens.get("Worker", ""), "manager": tokens.get("Manager", "")}
    return swarm


def _not_manager(info: dict[str, Any]) -> str | None:
    """Why this engine cannot be (or become) our manager; None when it is one or is free."""
    state = info.get("LocalNodeState", "inactive")
    if state == "active" and not info.get("ControlAvailable"):
        managers = ", ".join(m.get("Addr", "?") for m in info.get("RemoteManagers") or []) or "unknown"
        return f"the hub is a worker of another swarm (managers: {managers}): leave it first"
    if state in ("pending", "error", "locked"):
        return f"the hub's swarm state is {state!r} ({info.get('Error') or 'no detail'}): leave it first"
    return None


@api_call("swarm_manager")
def swarm_manager(ctx: StepContext) -> CallResult:
    """Check/verify: the hub manages a swarm (and we learn its join tokens, unprinted)."""
    with dockerapi.client_for(ctx.transport) as client:
        info = _swarm_info(client)
        problem = _not_manager(info)
        if problem:
            return CallResult(False, problem)
        if info.get("LocalNodeState") != "active":
            return CallResult(False, "the hub is not in a swarm yet")
        swarm = _remember_tokens(ctx, client, info)
        addr = info.get("NodeAddr", "?")
        note = "" if addr == ctx.facts.hub_ip else f"; warning: advertises {addr}, not the internal IP {ctx.facts.hub_ip}"
        return CallResult(True, f"manager of swarm {swarm.cluster_id[:12]} at {addr}:{SWARM_PORT}{note}")


@api_call("swarm_init")
def swarm_init(ctx: StepContext) -> CallResult:
    """Apply: `docker swarm init --advertise-addr HUB_IP`, via the API so no token is printed."""
    with dockerapi.client_for(ctx.transport) as client:
        info = _swarm_info(client)
        problem = _not_manager(info)
        if problem:
            return CallResult(False, problem)
        if info.get("LocalNodeState") == "active":
            _remember_tokens(ctx, client, info)
            return CallResult(True, "already the manager of a swarm", changed=False)
        probes.stop_hub_listener(ctx)
        try:
            client.swarm.init(advertise_addr=ctx.facts.hub_ip, listen_addr=f"0.0.0.0:{SWARM_PORT}")
        except docker.errors.APIError as exc:
            return CallResult(False, f"swarm init failed: {exc.explanation or exc}")
        swarm = _remember_tokens(ctx, client, _swarm_info(client))
        return CallResult(True, f"swarm {swarm.cluster_id[:12]} created, advertised at {swarm.manager_addr}",
                          changed=True)


def manager_view(ctx: StepContext, role: str = "worker") -> tuple[SwarmInfo, str]:
    """The swarm and its join token for ``role``: from this run's state, or asked of the hub now."""
    with ctx.state.lock:
        swarm = ctx.state.data.get("swarm")
        token = (ctx.state.data.get("swarm_tokens") or {}).get(role)
    if swarm and token:
        return swarm, token
    hub_ctx = _on_host(ctx, ctx.site.hub_host.name)
    res = swarm_manager(hub_ctx)
    if not res.ok:
        raise SwarmError(f"the hub {ctx.site.hub_host.name} is not a swarm manager ({res.message}): "
                         "run the swarm-init step first")
    with ctx.state.lock:
        return ctx.state.data["swarm"], ctx.state.data["swarm_tokens"][role]


class SwarmError(Exception):
    """The manager cannot be used (reported as a failed check, not a traceback)."""


def _on_host(ctx: StepContext, name: str) -> StepContext:
    """The same step context, aimed at another host of the site."""
    from dataclasses import replace

    return replace(ctx, host=ctx.site.host(name), transport=ctx.reach(name))


def manager_nodes(ctx: StepContext) -> dict[str, dict[str, Any]]:
    """Node ID -> {hostname, role, state, addr, availability} as the manager lists them."""
    with dockerapi.client_for(ctx.reach(ctx.site.hub_host.name)) as client:
        nodes = client.nodes.list()
    return {
        n.id: {
            "hostname": n.attrs.get("Description", {}).get("Hostname", "?"),  # empty for a node joining now
            "role": n.attrs["Spec"].get("Role", "?"),
            "state": n.attrs["Status"].get("State", "?"),
            "addr": n.attrs["Status"].get("Addr", "?"),
            "availability": n.attrs["Spec"].get("Availability", "?"),
        }
        for n in nodes
    }


# ---------------------------------------------------------------- the nodes (workers)


def _membership(ctx: StepContext, info: dict[str, Any], nodes: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """('joined' | 'free' | 'foreign' | 'broken', detail) for this node's engine."""
    state = info.get("LocalNodeState", "inactive")
    if state == "inactive":
        return "free", "not in a swarm"
    if state != "active":
        return "broken", f"swarm state {state!r} ({info.get('Error') or 'no detail'})"
    node_id = info.get("NodeID", "")
    if node_id in nodes:
        return "joined", node_id
    managers = ", ".join(m.get("Addr", "?") for m in info.get("RemoteManagers") or []) or "unknown"
    return "foreign", f"member of another swarm (managers: {managers})"


def _count_joined(ctx: StepContext) -> None:
    with ctx.state.lock:
        done = ctx.state.data.setdefault("swarm_joined", set())
        done.add(ctx.host.name)
        count = len(done)
    ctx.progress("nodes joined", count, len(ctx.site.nodes))


@api_call("swarm_member")
def swarm_member(ctx: StepContext) -> CallResult:
    """Check: this node is already in the hub's swarm (not merely in *a* swarm)."""
    try:
        manager_view(ctx)
    except SwarmError as exc:
        return CallResult(False, str(exc))
    nodes = manager_nodes(ctx)
    with dockerapi.client_for(ctx.transport) as client:
        status, detail = _membership(ctx, _swarm_info(client), nodes)
    if status == "joined":
        node = nodes[detail]
        ghosts = _ghosts(nodes, detail)
        if ghosts:
            return CallResult(False, f"in this swarm, but the manager still lists {len(ghosts)} earlier "
                                     f"{node['hostname']} entr{'y' if len(ghosts) == 1 else 'ies'} as down")
        want = wanted_role(ctx.site, ctx.host.name)
        if node["role"] != want:
            return CallResult(False, f"in this swarm as {node['role']}; swarm.managers = {ctx.site.swarm.managers} "
                                     f"wants it a {want} (apply {'promotes' if want == 'manager' else 'demotes'} it)")
        return CallResult(True, f"in this swarm as {node['role']} ({node['state']})")
    return CallResult(False, detail)


def _dropped(count: int) -> str:
    return f"; removed {count} earlier down entr{'y' if count == 1 else 'ies'} of it from the manager's list" if count else ""


def _unknown(node: dict[str, Any] | None) -> bool:
    return node is None or node["hostname"] in ("", "?") or node["addr"] in ("", "?", "0.0.0.0")


def _ghosts(nodes: dict[str, dict[str, Any]], node_id: str) -> list[str]:
    """Earlier identities of this node the manager still lists as down: the same hostname and
    address, another ID (left with `docker swarm leave` on the node alone, then joined again).
    `docker node ls` shows them as down forever, and they read as a broken node."""
    me = nodes.get(node_id)
    if me is None:
        return []
    return [nid for nid, n in nodes.items() if nid != node_id and n["state"] == "down"
            and n["hostname"] == me["hostname"] and n["addr"] == me["addr"]]


def _listed(ctx: StepContext, node_id: str, wait: float) -> dict[str, dict[str, Any]]:
    """The manager's node list once it shows this node's hostname and address (a node that has
    just joined has neither yet), or as it is after ``wait`` seconds."""
    deadline = time.monotonic() + wait
    nodes = manager_nodes(ctx)
    while _unknown(nodes.get(node_id)) and time.monotonic() < deadline:
        time.sleep(1)
        nodes = manager_nodes(ctx)
    return nodes


def _drop_ghosts(ctx: StepContext, node_id: str, nodes: dict[str, dict[str, Any]]) -> int:
    """`docker node rm` of this node's down earlier identities (in ``nodes``, the manager's
    list), on the manager; how many."""
    ghosts = _ghosts(nodes, node_id)
    with dockerapi.client_for(ctx.reach(ctx.site.hub_host.name)) as hub:
        for ghost in ghosts:
            hub.api.remove_node(ghost, force=True)
    return len(ghosts)


@api_call("swarm_join")
def swarm_join(ctx: StepContext, role: str = "worker") -> CallResult:
    """Apply: join the hub's swarm as a worker (as a manager, or promoted to one, for the first
    nodes when [swarm] managers = 3), through the Docker API: no join token is ever printed."""
    if role != wanted_role(ctx.site, ctx.host.name):
        return CallResult(False, f"role {role!r}: {ctx.host.name} is a {wanted_role(ctx.site, ctx.host.name)} "
                                 "by [swarm] managers (the recipe's condition and the site disagree)")
    try:
        swarm, token = manager_view(ctx, role)
    except SwarmError as exc:
        return CallResult(False, str(exc))
    nodes = manager_nodes(ctx)
    my_ip = ctx.facts.ips.get(ctx.host.name, ctx.host.address)
    with dockerapi.client_for(ctx.transport) as client:
        status, detail = _membership(ctx, _swarm_info(client), nodes)
        if status == "joined":
            _count_joined(ctx)
            dropped = _drop_ghosts(ctx, detail, nodes)
            if nodes[detail]["role"] != role:
                with manager_turn("manager"):
                    set_role(ctx, detail, role)
                    if role == "manager":
                        wait_reachable(ctx, detail)
                return CallResult(True, f"{'promoted to' if role == 'manager' else 'demoted to'} {role} "
                                  f"([swarm] managers = {ctx.site.swarm.managers})" + _dropped(dropped), changed=True)
            return CallResult(True, "already in this swarm" + _dropped(dropped), changed=bool(dropped))
        if status in ("foreign", "broken"):
            return CallResult(False, f"{ctx.host.name} is {detail}: leave it first")
        with manager_turn(role):
            try:
                client.swarm.join(remote_addrs=[swarm.manager_addr], join_token=token,
                                  advertise_addr=my_ip, listen_addr=f"0.0.0.0:{SWARM_PORT}")
            except docker.errors.APIError as exc:
                return CallResult(False, f"swarm join to {swarm.manager_addr} failed: {exc.explanation or exc}")
            new_id = _swarm_info(client).get("NodeID", "")
            if role == "manager" and new_id:
                wait_reachable(ctx, new_id)
    _count_joined(ctx)
    dropped = _drop_ghosts(ctx, new_id, _listed(ctx, new_id, GHOST_WAIT_S)) if new_id else 0
    return CallResult(True, f"joined swarm {swarm.cluster_id[:12]} as {role} via {swarm.manager_addr}"
                      + _dropped(dropped), changed=True)


@api_call("swarm_node_ready")
def swarm_node_ready(ctx: StepContext, role: str = "worker", timeout: float = READY_TIMEOUT_S) -> CallResult:
    """Verify: the manager lists this node Ready with the expected role (waits while it comes up);
    the recipe asks for the role [swarm] managers gives the node."""
    try:
        manager_view(ctx)
    except SwarmError as exc:
        return CallResult(False, str(exc))
    with dockerapi.client_for(ctx.transport) as client:
        info = _swarm_info(client)
    node_id = info.get("NodeID", "")
    deadline = time.monotonic() + timeout
    while True:
        node = manager_nodes(ctx).get(node_id) if node_id else None
        if node and node["state"] == "ready" and node["role"] == role:
            return CallResult(True, f"Ready as {role} in the manager's node list ({node['hostname']}, {node['addr']})")
        if time.monotonic() > deadline:
            break
        time.sleep(2)
    if not node:
        return CallResult(False, f"{ctx.host.name} is not in the manager's node list (not joined)")
    return CallResult(False, f"{ctx.host.name} is {node['state']} as {node['role']} in the manager's node list "
                             f"(want ready as {role})")


@api_call("swarm_left")
def swarm_left(ctx: StepContext) -> CallResult:
    """Check (teardown): this host's engine is in no swarm."""
    with dockerapi.client_for(ctx.transport) as client:
        state = _swarm_info(client).get("LocalNodeState", "inactive")
    return CallResult(state == "inactive", "not in a swarm" if state == "inactive" else f"swarm state {state!r}")


@api_call("swarm_leave")
def swarm_leave(ctx: StepContext, force: bool = False) -> CallResult:
    """Leave the swarm (`docker swarm leave`), and drop a worker from the manager's node list.

    A manager only leaves with ``force`` (it ends the swarm for everyone), so a teardown
    has to say so explicitly.
    """
    with dockerapi.client_for(ctx.transport) as client:
        info = _swarm_info(client)
        if info.get("LocalNodeState", "inactive") == "inactive":
            return CallResult(True, "not in a swarm", changed=False)
        node_id, manager = info.get("NodeID", ""), bool(info.get("ControlAvailable"))
        if manager and not force:
            return CallResult(False, f"{ctx.host.name} manages the swarm: leaving ends it (force needed)")
        refused = None if manager else node_id_refusal(node_id)
        if refused:  # the node keeps its membership for a look
            return CallResult(False, f"{ctx.host.name}: {refused}")
        client.swarm.leave(force=force or manager)
    if manager or ctx.host.name == ctx.site.hub_host.name:
        return CallResult(True, "left the swarm (it is gone with its manager)", changed=True)
    removed = _forget_node(ctx, node_id)
    return CallResult(True, "left the swarm" + ("; removed from the manager's node list" if removed else ""),
                      changed=True)


NODE_ID = re.compile(r"[a-z0-9]{25}\Z")  # what Docker's swarm node ids look like


def node_id_refusal(node_id: str) -> str | None:
    """Why a node id a node reported must not reach the manager (None: it is one).

    The id comes from the node, which the hub must not trust (root on a worker is not root
    on the hub): anything but a swarm node id is refused before the manager is asked."""
    if NODE_ID.fullmatch(node_id):
        return None
    return (f"reported swarm node id {node_id[:40]!r}, which is not one (25 letters and digits); not removed "
            "from the swarm: check the node, then `docker node ls` / `docker node rm` on the hub")


def _forget_node(ctx: StepContext, node_id: str, timeout: float = 30.0) -> bool:
    """`docker node rm` on the manager once it sees the node down (best effort: False if it cannot)."""
    if node_id_refusal(node_id):
        return False
    try:
        with dockerapi.client_for(ctx.reach(ctx.site.hub_host.name)) as hub:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    node = hub.nodes.get(node_id)
                except docker.errors.NotFound:
                    return True
                if node.attrs["Status"].get("State") == "down":
                    hub.api.remove_node(node_id, force=True)
                    return True
                time.sleep(2)
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
        return False
    return False


# ---------------------------------------------------------------- shared storage


def _storage_url(ctx: StepContext, name: str) -> str:
    return f"nfs://{ctx.facts.nfs_ip}{ctx.site.storage.path}/{name}"


KERNEL_NFS = "grep -qw nfs4 /proc/filesystems || modprobe -q nfs4 2>/dev/null"
NFS_CLIENT_FIX = "apt-get install nfs-common (and a kernel with the nfs module, e.g. linux-image-amd64)"


@register("nfs_client")
def nfs_client(ctx: StepContext) -> CallResult:
    """Check/verify: this node's kernel mounts NFS, as Docker must for each user's home volume.

    Why it fails instead of falling back: without it users' files would stay in their servers'
    containers and vanish with them. Only the container lab says so openly
    ([storage] lab_without_nfs_client): its kernel has no NFS client at all."""
    if ctx.site.storage.lab_without_nfs_client:
        return CallResult(True, "cannot check here: lab without an NFS client ([storage] lab_without_nfs_client): "
                                "users' homes are NOT on NFS, their files stay in their servers' containers",
                          skipped=True)
    if ctx.run(KERNEL_NFS, sudo=True).ok:
        return CallResult(True, f"{ctx.host.name} mounts NFSv4 (users' homes are NFS volumes)")
    return CallResult(False, f"{ctx.host.name} cannot mount NFS (nfs4 not in /proc/filesystems, `modprobe nfs4` "
                             f"failed): users' servers there would get no home on NFS; fix: {NFS_CLIENT_FIX}")


def _probe_files(ctx: StepContext, folder: str) -> str:
    """A shell glob of this node's test files on the server: the current run's and any left by
    an older run (also the ones older versions wrote to the share's top)."""
    root = ctx.site.storage.path
    node = ctx.host.name
    places = [root] + ([f"{root}/{folder}"] if folder else [])
    return " ".join(f"{shlex.quote(p)}/.hubwizard-test-{shlex.quote(node)}-* {shlex.quote(p)}/.hubwizard-mount-"
                    f"{shlex.quote(node)}" for p in places)


def clean_test_files(ctx: StepContext, folder: str = "") -> None:
    """Remove this node's test files on the NFS server (best effort: a leftover is not a failure)."""
    ctx.reach(ctx.site.nfs_host.name).run(f"rm -f {_probe_files(ctx, folder)}", sudo=True)


@register("nfs_test_write")
def nfs_test_write(ctx: StepContext, folder: str = "") -> CallResult:
    """Write a file through NFS from this host (libnfs nfs-cp, NFSv3) and read it back on the server.

    Why libnfs: it needs no kernel NFS client, so the share is proven even on hosts that
    cannot mount it; and a read-back on the server proves it is *this* export that got it.
    ``folder``: a sub-folder of the share the squashed client may write (the export squashes
    every client to jovyan, who cannot write the share's root-owned top).
    """
    server = ctx.site.nfs_host.name
    on_server = ctx.reach(server)
    try:
        return _test_write(ctx, folder, server, on_server)
    finally:  # whatever happened (a retry, a failed read-back): no test file stays behind
        clean_test_files(ctx, folder)


def _test_write(ctx: StepContext, folder: str, server: str, on_server: Any) -> CallResult:
    deadline = time.monotonic() + GRACE_WAIT_S
    while True:
        # a fresh name each time: nfs-cp creates exclusively, and a server's cache may still
        # know a file removed behind its back (nfs-ganesha answers NFS3ERR_EXIST)
        nonce = pysecrets.token_hex(6)
        name = f"{folder + '/' if folder else ''}.hubwizard-test-{ctx.host.name}-{nonce}"
        content = f"hubwizard test write from {ctx.host.name} {nonce}\n"
        url = _storage_url(ctx, name)
        cmd = (f"command -v nfs-cp >/dev/null || {{ echo 'nfs-cp not found: install libnfs-utils'; exit 127; }}; "
               f"tmp=$(mktemp) && printf %s {shlex.quote(content)} > \"$tmp\" && "
               f"nfs-cp \"$tmp\" {shlex.quote(url)}; rc=$?; rm -f \"$tmp\"; exit $rc")
        res = ctx.run(cmd, sudo=True, timeout=60)
        # NFS3ERR_JUKEBOX = "try again later": a server that just (re)started is in its grace period
        if res.ok or "JUKEBOX" not in res.output or time.monotonic() > deadline:
            break
        time.sleep(3)
    if not res.ok:
        return CallResult(False, f"test write to {url} failed: {res.output or 'exit ' + str(res.exit_code)}")
    target = shlex.quote(f"{ctx.site.storage.path}/{name}")
    back = on_server.run(f"cat {target} && rm -f {target}", sudo=True)
    if back.stdout != content:
        return CallResult(False, f"wrote {url}, but {server} reads back {back.output[:80]!r}: "
                                 "the export is not the folder the server has")
    return CallResult(True, f"wrote {url} (NFSv3, libnfs), read back on {server}")


@register("nfs_kernel_mount")
def nfs_kernel_mount(ctx: StepContext, folder: str = "") -> CallResult:
    """The mount Docker makes for a user's NFS volume, done once by hand, where the kernel can.

    Docker's local driver calls mount(2) with type nfs, ``addr=NFS_IP,rw,nfsvers=4`` and
    device ``:PATH``: ``mount -i`` does the same without the mount.nfs helper.
    """
    probe = ctx.run("grep -qwE 'nfs4?' /proc/filesystems || modprobe -q nfs 2>/dev/null && "
                    "grep -qwE 'nfs4?' /proc/filesystems", sudo=True)
    if not probe.ok:
        return CallResult(True, "cannot check on this host: kernel has no NFS client", skipped=True)
    ip, path = ctx.facts.nfs_ip, ctx.site.storage.path + (f"/{folder}" if folder else "")
    cmd = (f"d=$(mktemp -d) && mount -i -t nfs -o {shlex.quote(f'addr={ip},rw,nfsvers=4')} {shlex.quote(':' + path)} "
           f"\"$d\" && touch \"$d/.hubwizard-mount-{ctx.host.name}\" && rm -f \"$d/.hubwizard-mount-{ctx.host.name}\"; "
           f"rc=$?; umount \"$d\" 2>/dev/null; "
           f"rmdir \"$d\"; exit $rc")
    res = ctx.run(cmd, sudo=True, timeout=60)
    if not res.ok:
        return CallResult(False, f"kernel NFS mount of {ip}:{path} (as Docker's nfs volumes do) failed: {res.output}")
    return CallResult(True, f"kernel NFSv4 mount of {ip}:{path} works (the mount Docker makes per user)")


# ---------------------------------------------------------------- quotas


@register("quota_apply_existing")
def quota_apply_existing(ctx: StepContext) -> CallResult:
    """Run set_quota.sh for every user folder already under storage.path (new ones: at spawn)."""
    path = ctx.site.storage.path
    script = ctx.template_context["paths"]["set_quota"]
    res = ctx.run(f"find {shlex.quote(path)} -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%f\\n'")
    folders = [f for f in res.stdout.split() if f]
    for name in folders:
        out = ctx.run(f"{shlex.quote(script)} {shlex.quote(path + '/' + name)}", sudo=True)
        if not out.ok:
            return CallResult(False, f"set_quota for {name}: {out.output}")
    return CallResult(True, f"quota set on {len(folders)} existing user folder(s)", changed=bool(folders))


@register("quota_readback")
def quota_readback(ctx: StepContext) -> CallResult:
    """Verify: ``xfs_quota -x -c 'report -p'`` parsed; every user folder's project has a hard limit."""
    path = ctx.site.storage.path
    q = shlex.quote(path)
    res = ctx.run(f"xfs_quota -x -c 'report -p' \"$(findmnt -n -o TARGET --target {q})\"", sudo=True)
    if not res.ok:
        return CallResult(False, f"xfs_quota report failed: {res.output}")
    try:
        report = parse_report(res.stdout)
    except ValueError as exc:
        return CallResult(False, f"cannot read the quota report: {exc}")
    folders = ctx.run(f"find {q} -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%f\\n'").stdout.split()
    missing = [f for f in folders if not ((row := report.get(project_name(f))) and row.hard > 0)]
    if missing:
        return CallResult(False, f"no hard limit in the quota report for: {', '.join(missing)}")
    return CallResult(True, f"quota report of {report.mount} read: {len(report.rows)} project(s), "
                            f"{len(folders)} user folder(s) limited")


# --------------------------------------------------------------------------- the users' overlay

# Docker's encrypted overlay is IPsec ESP (AES-GCM, rfc4106) between the hosts, keyed by the
# managers. Whether a kernel can do it is asked of the kernel itself: add and delete one ESP
# security association with that algorithm on TEST-NET addresses (nothing is sent anywhere).
_SA = "src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x48570001"
XFRM_PROBE = (f"ip xfrm state delete {_SA} 2>/dev/null; ip xfrm state add {_SA} reqid 1 mode transport "
              f"aead 'rfc4106(gcm(aes))' 0x{'11' * 20} 128 && ip xfrm state delete {_SA}")


def encryption_gaps(ctx: StepContext) -> dict[str, str]:
    """Host name -> why its kernel cannot carry an encrypted overlay (empty: every host can).

    Every active host is asked: one host without ESP would lose its containers' overlay traffic."""
    gaps = {}
    for host in ctx.site.active_hosts:
        t = ctx.connections.get(host.name) if ctx.connections else ctx.transport
        res = t.run(XFRM_PROBE, sudo=True)
        if not res.ok:
            gaps[host.name] = (res.output.strip().splitlines() or ["ip xfrm failed"])[-1]
    return gaps


def overlay_options(ctx: StepContext) -> tuple[dict[str, str], str]:
    """The overlay's driver options, and a sentence for people saying whether traffic is encrypted."""
    gaps = encryption_gaps(ctx)
    if not gaps:
        return {"encrypted": ""}, "encrypted (IPsec ESP between the hosts)"
    named = "; ".join(f"{h}: {why}" for h, why in sorted(gaps.items()))
    return {}, (f"NOT encrypted: the kernel of {', '.join(sorted(gaps))} cannot do IPsec ESP with AES-GCM ({named}); "
                "traffic between users' servers and the hub crosses the network as plain VXLAN. Load the esp4 and "
                "xfrm_user modules (or use a kernel with them) and re-apply the network step to encrypt it")


def _network(client: docker.DockerClient, name: str) -> Any | None:
    try:
        return client.networks.get(name)
    except docker.errors.NotFound:
        return None


def _overlay_state(net: Any) -> tuple[bool, bool]:
    """(an attachable overlay, encrypted)."""
    attrs = net.attrs
    ok = attrs.get("Driver") == "overlay" and bool(attrs.get("Attachable"))
    return ok, "encrypted" in (attrs.get("Options") or {})


@api_call("overlay_current")
def overlay_current(ctx: StepContext) -> CallResult:
    """Check: the users' network is an attachable overlay, encrypted when every host's kernel can."""
    name = ctx.site.hub.network
    options, said = overlay_options(ctx)
    with dockerapi.client_for(ctx.transport) as client:
        net = _network(client, name)
        if net is None:
            return CallResult(False, f"network {name} does not exist")
        ok, encrypted = _overlay_state(net)
    if not ok:
        return CallResult(False, f"network {name} is not an attachable overlay")
    if encrypted != bool(options):
        return CallResult(False, f"network {name} is {'' if encrypted else 'not '}encrypted; wanted: {said}")
    return CallResult(True, f"network {name}: attachable overlay, {said}")


@api_call("overlay_create")
def overlay_create(ctx: StepContext) -> CallResult:
    """Apply: create the overlay (encrypted where possible); re-create one whose encryption is
    wrong while nothing uses it, else say what to remove first."""
    name = ctx.site.hub.network
    options, said = overlay_options(ctx)
    with dockerapi.client_for(ctx.transport) as client:
        net = _network(client, name)
        if net is not None:
            ok, encrypted = _overlay_state(net)
            if ok and encrypted == bool(options):
                return CallResult(True, f"network {name} already right: {said}", changed=False)
            net.reload()
            users = _services_on(client, net.id) + [c.get("Name", "?") for c in (net.attrs.get("Containers") or {}).values()]
            if users:
                state = f"{'an' if ok else 'not an'} attachable overlay, {'' if encrypted else 'not '}encrypted"
                return CallResult(False, f"network {name} exists ({state}) and is in use by {', '.join(users[:5])}; "
                                  f"wanted: {said}. Fix: stop the users' servers and `docker service rm jupyterhub` "
                                  "on the hub, then `hubwizard apply --from network`")
            net.remove()
        client.networks.create(name, driver="overlay", attachable=True, options=options or None)
    return CallResult(True, f"network {name} created: attachable overlay, {said}", changed=True)


@api_call("overlay_encrypted")
def overlay_encrypted(ctx: StepContext) -> CallResult:
    """Verify: the overlay's traffic is encrypted; where a kernel cannot, a skip that says so
    plainly (shown in verify's output, like a missing NFS client), never a silent pass."""
    name = ctx.site.hub.network
    options, said = overlay_options(ctx)
    with dockerapi.client_for(ctx.transport) as client:
        net = _network(client, name)
        encrypted = net is not None and _overlay_state(net)[1]
    if encrypted:
        return CallResult(True, f"network {name}: {said}")
    if not options:
        return CallResult(True, f"network {name}: {said}", skipped=True)
    return CallResult(False, f"network {name} is not encrypted though every host's kernel can: re-apply the network step")


def _services_on(client: docker.DockerClient, net_id: str) -> list[str]:
    names = []
    for svc in client.services.list():
        nets = (svc.attrs.get("Spec", {}).get("TaskTemplate", {}).get("Networks") or [])
        if any(n.get("Target") == net_id for n in nets):
            names.append(svc.name)
    return names
