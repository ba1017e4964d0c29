"""The classic track's JupyterHub: a container on the hub host's network whose DockerSpawner
drives the Swarm manager on HUB:4000, and the end-to-end check that a user's server runs on a
node as the manager lists it (`docker -H :4000 ps -a`).

Why Python: the container is re-created exactly when what it runs changed (image digest,
secrets, mounts: a digest, as for the swarm-mode hub service), and the secrets reach the hub
as 0400 files uploaded over SFTP, never on a command line, in an event or in the journal.
The image, the API token, the port guard and the web checks are the swarm-mode track's own
(hub_image, hub_service, hub_web, hub_e2e): only how the hub runs and where servers land differ.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Iterator
from pathlib import Path

from hubwizard.actions import hub_service
from hubwizard.actions.classic import CLIENT_DIR, manager_cli
from hubwizard.actions.hub_e2e import E2E_USER, _stop_and_delete, _wait, run_stages, server_answers, start_test_server
from hubwizard.core.config import Site
from hubwizard.engine.calls import CallResult, StepContext, register

HUB_CONTAINER = "jupyterhub"
SECRETS_ON_HUB = "/etc/hubwizard/hub-secrets"  # 0700 root, mounted read-only at /run/secrets
SPEC_LABEL = hub_service.SPEC_LABEL


def run_args(site: Site, image_ref: str, homes_mounted: bool) -> list[str]:
    """The `docker run` arguments of the hub container (without its spec label)."""
    from hubwizard.core.render import PATHS

    args = ["--name", HUB_CONTAINER, "--detach", "--restart", "always", "--network", "host",
            "--mount", f"type=volume,source={hub_service.DATA_VOLUME},target=/srv/jupyterhub/data",
            "--mount", f"type=bind,source={SECRETS_ON_HUB},target={PATHS['secrets_dir']},readonly",
            "--env", f"HUBWIZARD_SECRETS_DIR={PATHS['secrets_dir']}"]
    if site.classic.docker_tls:
        args += ["--mount", f"type=bind,source={CLIENT_DIR},target={CLIENT_DIR},readonly",
                 "--env", f"HUBWIZARD_DOCKER_TLS_DIR={CLIENT_DIR}"]
    if site.storage.kind in ("nfs", "autofs"):
        args += ["--mount", "type=bind,source=/home,target=/home",
                 "--mount", "type=bind,source=/etc/passwd,target=/srv/hubwizard/passwd,readonly",
                 "--env", "HUBWIZARD_HOME_ROOT=/home", "--env", f"HUBWIZARD_HOMES_MOUNTED={int(homes_mounted)}"]
    return [*args, image_ref]


def _wanted(ctx: StepContext, create: bool) -> tuple[list[str], dict[str, str], str] | None:
    """(run arguments, secrets, spec digest) as apply would start the hub now; None: no image."""
    image = hub_service._image_ref(ctx)
    if image is None:
        return None
    secrets = hub_service.hub_secrets(ctx, create=create)
    args = run_args(ctx.site, image, hub_service.nodes_mount_nfs(ctx))
    names = [hub_service.secret_name(t, v) for t, v in sorted(secrets.items())]  # digests, not values
    return args, secrets, hub_service.spec_digest([*args, *names])


def _current_spec(ctx: StepContext) -> str | None:
    fmt = shlex.quote("{{index .Config.Labels \"" + SPEC_LABEL + "\"}}")
    res = ctx.run(f"docker inspect --format {fmt} {HUB_CONTAINER} 2>/dev/null", sudo=True)
    return res.stdout.strip() if res.ok else None


@register("classic_hub_current")
def classic_hub_current(ctx: StepContext) -> CallResult:
    """Check: the hub container runs the current image, secrets and mounts; port guard in place."""
    wanted = _wanted(ctx, create=False)
    if wanted is None:
        return CallResult(False, f"{ctx.site.images.hub} is not on the hub: run the classic-hub-image step")
    if hub_service.api_token(ctx, create=False) is None:
        return CallResult(False, "no hub_api_token in the secrets store yet")
    have, want = _current_spec(ctx), wanted[2]
    if have is None:
        return CallResult(False, f"container {HUB_CONTAINER} does not exist")
    if have != want:
        return CallResult(False, f"container {HUB_CONTAINER} has spec {have}, wanted {want} (image, secrets or mounts)")
    if not ctx.run(hub_service._GUARD_CHECK, sudo=True).ok:
        return CallResult(False, "the rules guarding port 8000 (DOCKER-USER, ip6tables INPUT) are missing")
    return CallResult(True, f"container {HUB_CONTAINER} spec {want}")


def _put_secrets(ctx: StepContext, secrets: dict[str, str]) -> None:
    """Each secret as a 0400 root file in a 0700 folder; files of values no longer used go."""
    ctx.run(f"install -d -o root -g root -m 0700 {SECRETS_ON_HUB}", sudo=True)
    for target, value in secrets.items():
        ctx.transport.put(value.encode(), f"{SECRETS_ON_HUB}/{target}", mode=0o400, sudo=True)
    keep = " ".join(f"! -name {shlex.quote(t)}" for t in secrets)
    ctx.run(f"find {SECRETS_ON_HUB} -mindepth 1 -maxdepth 1 {keep} -delete", sudo=True)


@register("classic_hub")
def classic_hub(ctx: StepContext) -> CallResult:
    """Apply: the port guard, the secrets files, and the hub container (re-created when its spec changed)."""
    wanted = _wanted(ctx, create=True)
    if wanted is None:
        return CallResult(False, f"{ctx.site.images.hub} is not on the hub: run the classic-hub-image step first")
    args, secrets, want = wanted
    ctx.transport.put(hub_service.PORT_GUARD.encode(), hub_service.PORT_GUARD_UNIT, mode=0o644, sudo=True)
    unit = Path(hub_service.PORT_GUARD_UNIT).name
    res = ctx.run(f"systemctl daemon-reload && systemctl enable {unit} && systemctl restart {unit} && "
                  f"{hub_service._GUARD_CHECK}")
    if not res.ok:
        return CallResult(False, f"cannot install the port-8000 guard (IPv4 and IPv6): {res.output}")
    _put_secrets(ctx, secrets)
    if _current_spec(ctx) == want:
        return CallResult(True, f"container {HUB_CONTAINER} already current", changed=False)
    ctx.run(f"docker rm -f {HUB_CONTAINER} >/dev/null 2>&1 || true", sudo=True)
    cmd = "docker run --label " + shlex.quote(f"{SPEC_LABEL}={want}") + " " + shlex.join(args)
    res = ctx.run(cmd, sudo=True, timeout=300)
    if not res.ok:
        return CallResult(False, f"docker run {HUB_CONTAINER} failed: {res.output}")
    return CallResult(True, f"container {HUB_CONTAINER} started (spec {want})", changed=True)


@register("classic_hub_running")
def classic_hub_running(ctx: StepContext, timeout: float = 240) -> CallResult:
    """Verify: the hub container runs and JupyterHub answers on 127.0.0.1:8000."""
    probe = ("python3 -c " + shlex.quote("import urllib.request as u;print(u.urlopen("
                                         "'http://127.0.0.1:8000/hub/api',timeout=5).read().decode())"))
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = ctx.run(f"docker inspect -f '{{{{.State.Status}}}}' {HUB_CONTAINER} 2>&1", sudo=True).stdout.strip()
        if state == "running":
            res = ctx.run(f"docker exec {HUB_CONTAINER} {probe}", sudo=True, timeout=30)
            if res.ok and '"version"' in res.stdout:
                return CallResult(True, f"{HUB_CONTAINER} running, /hub/api says {res.stdout.strip()[:60]}")
        ctx.progress("waiting for the hub", round(time.monotonic() - deadline + timeout), timeout)
        time.sleep(3)
    logs = ctx.run(f"docker logs --tail 20 {HUB_CONTAINER} 2>&1", sudo=True).output
    return CallResult(False, f"{HUB_CONTAINER} is {state or 'absent'} after {timeout:.0f}s: the hub does not "
                      f"answer on 127.0.0.1:8000\n{logs}")


# --------------------------------------------------------------------------- end to end


def manager_listing(ps_output: str, container: str) -> tuple[str, str] | None:
    """From `docker -H :4000 ps -a` output: (node, status) of ``container``, which Swarm lists
    as NODE/NAME; None when it is not listed."""
    for line in ps_output.splitlines()[1:]:
        columns = re.split(r"\s{2,}", line.strip())
        node, _, bare = columns[-1].rpartition("/")
        if bare == container:
            status = next((c for c in columns if c.startswith(("Up ", "Exited", "Created", "Restarting"))), "?")
            return node, status
    return None


def published_ip(port_output: str) -> str:
    """`docker port NAME 8888` -> the address the port is published on ("" when none)."""
    for line in port_output.splitlines():
        addr = line.rpartition(" -> ")[2] if " -> " in line else line
        if ":" in addr:
            return addr.rpartition(":")[0].strip("[]")
    return ""


def _on_manager(ctx: StepContext, args: str) -> str:
    res = ctx.run(f"{manager_cli(ctx.site, ctx.facts.hub_ip)} {args}", sudo=True, timeout=60)
    if not res.ok:
        raise RuntimeError(f"docker -H :4000 {args}: {res.output[-300:]}")
    return res.stdout


def classic_e2e_steps(ctx: StepContext, token: str) -> Iterator[str]:
    """The end-to-end check on the classic track, a sentence per stage (raises on failure)."""
    site, user = ctx.site, E2E_USER
    container = f"jupyter-{user}"
    yield from start_test_server(ctx, token)
    found = manager_listing(_on_manager(ctx, "ps -a"), container)
    nodes = {h.name: ctx.facts.ips.get(h.name, h.address) for h in site.nodes} or {site.hub_host.name: ctx.facts.hub_ip}
    if found is None:
        raise RuntimeError(f"`docker -H :4000 ps -a` does not list {container}")
    node, status = found
    if node not in nodes:
        raise RuntimeError(f"`docker -H :4000 ps -a` lists {node}/{container}: {node!r} is not a node of the site")
    yield f"`docker -H :4000 ps -a` lists {node}/{container} ({status})"
    address = published_ip(_on_manager(ctx, f"port {shlex.quote(container)} 8888"))
    if address != nodes[node]:
        raise RuntimeError(f"{container}'s port is published on {address or 'nothing'}, not on {node}'s internal "
                           f"address {nodes[node]} (a 0.0.0.0 binding exposes it on every interface)")
    yield f"its port is published on {node}'s internal address {address} only"
    yield server_answers(site, token)
    _stop_and_delete(site, token, user, ctx)
    _wait(ctx, "the manager no longer lists it", 60,
          lambda: True if manager_listing(_on_manager(ctx, "ps -a"), container) is None else None)
    _remove_test_home(ctx)
    yield f"server stopped, {container} gone from `docker -H :4000 ps -a`, user {user} deleted"


def _remove_test_home(ctx: StepContext) -> None:
    """The test user's folder in the hub's /home (made by the spawn hook) goes with the test user."""
    if ctx.site.storage.kind in ("nfs", "autofs"):
        ctx.run(f"rm -rf /home/{E2E_USER}", sudo=True)


@register("classic_end_to_end")
def classic_end_to_end(ctx: StepContext) -> CallResult:
    """Verify: a test user's server is placed on a node by the manager, answers through HTTPS,
    then goes away; on lab stand-ins the message says which parts were stood in."""
    token = hub_service.api_token(ctx, create=False)
    if not token:
        return CallResult(False, "no hub_api_token in the secrets store: run the classic-hub step")
    def cleanup() -> None:
        _stop_and_delete(ctx.site, token, E2E_USER, ctx)
        _remove_test_home(ctx)

    result = run_stages(ctx, classic_e2e_steps(ctx, token), 6, cleanup)
    if not result.ok:
        return result
    done = [result.message]
    if ctx.site.classic.lab_stand_ins:
        done.append("ON LAB STAND-INS: the manager on :4000 is hubwizard's stand-in for `swarm manage` (the "
                    "nodes' engines are real)")
    if not hub_service.nodes_mount_nfs(ctx):
        done.append("/home/USER NOT mounted in the server ([storage] lab_without_nfs_client: no NFS client here)")
    return CallResult(True, "; ".join(done))
