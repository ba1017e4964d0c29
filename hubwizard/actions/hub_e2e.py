"""Checks of the hub as a whole: the idle culler runs with the site's timeout, and a test
user's server spawns on a worker, answers through HTTPS and goes away.

Apart from the steps they check: they only look (through the hub API, from the admin
machine), and they build on the image, service and web modules alike.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from hubwizard.actions.hub_service import api_token
from hubwizard.actions.hub_web import https
from hubwizard.core.config import Site
from hubwizard.core.events import OutputLine
from hubwizard.engine.calls import CallResult, StepContext, register
from hubwizard.remote.dockerapi import client_for

# letters only: the same name in URLs, services and folders. The check's token may change this
# user alone (assets/partials/services.py.j2 names it in the role's scopes; a leaked token
# cannot start, reach or delete anyone else's server)
E2E_USER = "hubwizardcheck"


# --------------------------------------------------------------------------- culler


def _hub_container(client: Any):
    from hubwizard.core.render import HUB_SERVICE

    found = client.containers.list(filters={"label": f"com.docker.swarm.service.name={HUB_SERVICE}"})
    # the classic track runs the hub as a plain container of that name (classic_hub.HUB_CONTAINER)
    found = found or client.containers.list(filters={"name": f"^{HUB_SERVICE}$"})
    return found[0] if found else None


CULLER_PROBE = (
    "import glob\n"
    "for p in glob.glob('/proc/[0-9]*/cmdline'):\n"
    "    try:\n"
    "        a = open(p, 'rb').read().split(b'\\0')\n"
    "    except OSError:\n"
    "        continue\n"
    "    if any(b'jupyterhub_idle_culler' in x for x in a):\n"
    "        print(' '.join(x.decode() for x in a if x))\n"
)


def culler_timeout(cmdlines: str) -> int | None:
    """The --timeout of a running jupyterhub_idle_culler, from its command line."""
    for line in cmdlines.splitlines():
        for arg in line.split():
            if arg.startswith("--timeout="):
                return int(arg.split("=", 1)[1])
    return None


@register("culler_running")
def culler_running(ctx: StepContext) -> CallResult:
    """Verify: the hub API lists the idle-culler service, and it runs with the site's timeout."""
    token = api_token(ctx, create=False)
    if not token:
        return CallResult(False, "no hub_api_token in the secrets store: run the hub-service step")
    try:
        reply = https(ctx.site, "GET", "/hub/api/services", token=token)
    except OSError as exc:
        return CallResult(False, f"GET /hub/api/services: {exc}")
    if reply.status != 200:
        return CallResult(False, f"GET /hub/api/services answered {reply.status}: {reply.body[:200]!r}")
    if "idle-culler" not in reply.json():
        return CallResult(False, f"the hub lists no idle-culler service: {sorted(reply.json())}")
    container = _hub_container(client_for(ctx.transport, timeout=600))
    if container is None:
        return CallResult(False, "no running jupyterhub container on the hub")
    out = container.exec_run(["python3", "-c", CULLER_PROBE]).output.decode(errors="replace")
    timeout = culler_timeout(out)
    want = ctx.site.hub.idle_timeout
    if timeout != want:
        return CallResult(False, f"idle culler runs with --timeout={timeout}, the site says {want}")
    return CallResult(True, f"idle-culler listed by the hub API, running with --timeout={timeout}")


# --------------------------------------------------------------------------- end to end


def _wait(ctx: StepContext, what: str, timeout: float, probe) -> Any:
    """Poll ``probe`` (returns a value or None) with progress until it answers or time runs out."""
    start = time.monotonic()
    while True:
        value = probe()
        if value is not None:
            return value
        spent = time.monotonic() - start
        if spent > timeout:
            raise TimeoutError(f"{what}: no answer after {timeout:.0f}s")
        ctx.progress(what, round(spent), timeout)
        time.sleep(2)


@dataclass
class UserTask:
    """Where a user's server runs, and the limits its service was given."""

    service: str
    node: str
    role: str
    cpus: float | None
    memory: int | None
    on_hub: bool = False  # the hub's node (labelled when [swarm] managers = 3)


def size_bytes(size: str) -> int:
    """A site size ("2G") in bytes, with JupyterHub's binary units."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    return int(float(size[:-1]) * units[size[-1]]) if size[-1] in units else int(size)


def _user_task(client: Any, user: str) -> UserTask | None:
    """The user's server task once it runs; the service is found by the JUPYTERHUB_USER its
    spawner set, not by its (escaped) name."""
    for service in client.services.list():
        template = service.attrs["Spec"]["TaskTemplate"]
        if f"JUPYTERHUB_USER={user}" not in (template.get("ContainerSpec", {}).get("Env") or []):
            continue
        limits = template.get("Resources", {}).get("Limits", {})
        for task in service.tasks(filters={"desired-state": "running"}):
            if task.get("Status", {}).get("State") == "running" and task.get("NodeID"):
                node = client.nodes.get(task["NodeID"]).attrs
                cpus = limits.get("NanoCPUs")
                on_hub = (node["Spec"].get("Labels") or {}).get("org.hubwizard.hub") == "true"
                return UserTask(service.name, node.get("Description", {}).get("Hostname", "?"), node["Spec"]["Role"],
                                cpus / 1e9 if cpus else None, limits.get("MemoryBytes"), on_hub)
    return None


def limits_problem(task: UserTask, site: Site) -> str | None:
    """None when the service carries the site's CPU and memory limits, else what differs."""
    want_cpu, want_mem = site.hub.cpu_limit, size_bytes(site.hub.mem_limit)
    if task.cpus != want_cpu or task.memory != want_mem:
        return (f"service {task.service} has limits cpus={task.cpus} memory={task.memory}, the site says "
                f"cpu_limit={want_cpu} mem_limit={site.hub.mem_limit} ({want_mem} bytes)")
    return None


def _server_ready(site: Site, token: str, user: str) -> bool | None:
    reply = https(site, "GET", f"/hub/api/users/{user}", token=token)
    server = (reply.json() or {}).get("servers", {}).get("") if reply.status == 200 else None
    return True if server and server.get("ready") else None


def _stop_and_delete(site: Site, token: str, user: str, ctx: StepContext) -> None:
    https(site, "DELETE", f"/hub/api/users/{user}/server", token=token)

    def stopped() -> bool | None:
        reply = https(site, "GET", f"/hub/api/users/{user}", token=token)
        return True if reply.status == 404 or not (reply.json() or {}).get("servers") else None

    _wait(ctx, "stopping the test server", 120, stopped)
    https(site, "DELETE", f"/hub/api/users/{user}", token=token)


def _remove_test_folder(ctx: StepContext) -> None:
    """The test user's folder on NFS (made by the spawn hook) goes with the test user."""
    if ctx.site.storage.kind == "nfs" and ctx.connections is not None:
        folder = f"{ctx.site.storage.path}/{E2E_USER}"
        ctx.connections.get(ctx.site.nfs_host.name).run(f"rm -rf {shlex.quote(folder)}", sudo=True)


def start_test_server(ctx: StepContext, token: str) -> Iterator[str]:
    """Create the test user and start its server until ready (both tracks), a sentence per stage."""
    site, user = ctx.site, E2E_USER
    reply = https(site, "POST", f"/hub/api/users/{user}", token=token)
    if reply.status not in (201, 409):
        raise RuntimeError(f"creating test user {user}: {reply.status} {reply.body[:200]!r}")
    yield f"user {user} created"
    reply = https(site, "POST", f"/hub/api/users/{user}/server", token=token)
    if reply.status not in (201, 202, 400):
        raise RuntimeError(f"starting {user}'s server: {reply.status} {reply.body[:300]!r}")
    _wait(ctx, "waiting for the test server", 360, lambda: _server_ready(site, token, user))
    yield f"{user}'s server is ready"


def server_answers(site: Site, token: str) -> str:
    """The test user's Jupyter server answers its API through HTTPS (both tracks)."""
    user = E2E_USER
    reply = https(site, "GET", f"/user/{user}/api", token=token)
    if reply.status != 200 or "version" not in (reply.json() or {}):
        raise RuntimeError(f"GET /user/{user}/api: {reply.status} {reply.body[:200]!r}")
    return f"https://{site.site.domain}/user/{user}/api answers (jupyter_server {reply.json()['version']})"


def e2e_steps(ctx: StepContext, token: str) -> Iterator[str]:
    """The end-to-end check, a sentence per stage (raises on failure)."""
    site, user = ctx.site, E2E_USER
    yield from start_test_server(ctx, token)
    client = client_for(ctx.transport, timeout=600)
    task = _wait(ctx, "finding its Swarm task", 60, lambda: _user_task(client, user))
    if site.nodes and (task.on_hub or (site.swarm.managers == 1 and task.role != "worker")):
        raise RuntimeError(f"{user}'s server runs on {task.node} ({task.role}), not on a node beside the hub")
    problem = limits_problem(task, site)
    if problem:
        raise RuntimeError(problem)
    yield (f"it runs as Swarm service {task.service} on {task.node} ({task.role}) "
           f"with {task.cpus:g} CPU and {site.hub.mem_limit} memory")
    yield server_answers(site, token)
    _stop_and_delete(site, token, user, ctx)
    _remove_test_folder(ctx)
    yield f"server stopped, user {user} and its folder deleted"


@register("end_to_end")
def end_to_end(ctx: StepContext) -> CallResult:
    """Verify: a test user's server spawns on a worker, answers through HTTPS, then goes away."""
    token = api_token(ctx, create=False)
    if not token:
        return CallResult(False, "no hub_api_token in the secrets store: run the hub-service step")
    def cleanup() -> None:
        _stop_and_delete(ctx.site, token, E2E_USER, ctx)
        _remove_test_folder(ctx)

    return run_stages(ctx, e2e_steps(ctx, token), 5, cleanup)


def run_stages(ctx: StepContext, stages: Iterator[str], total: int, cleanup: Callable[[], None]) -> CallResult:
    """Run an end-to-end check's stages (both tracks): each shown as it passes; on a failure,
    ``cleanup`` (stop the test server, delete the test user) and the stages that passed."""
    done: list[str] = []
    try:
        for stage in stages:
            done.append(stage)
            ctx.progress("end-to-end", len(done), total)
            ctx.emit(OutputLine(ctx.step, ctx.host.name, "stdout", stage))
    except (OSError, RuntimeError, TimeoutError, ValueError) as exc:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError, ValueError):
            cleanup()
        return CallResult(False, "\n".join([*done, f"FAILED: {exc}"]))
    return CallResult(True, "; ".join(done))
