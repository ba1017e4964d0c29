"""The hub service: JupyterHub as a Swarm service, and the rule that keeps its port private.

Why Python and not shell in the recipes: the service is re-created only when what it runs
(image digest, secrets, mounts) changed, which needs a digest compare.

Secrets: the hub's API token and the OAuth client secret reach the hub as Docker secrets
created from stdin, never in a command line, an event or the journal.
"""

from __future__ import annotations

import hashlib
import shlex
import socket
import time
from collections.abc import Iterable
from pathlib import Path

from hubwizard.actions.hub_image import local_repo_digests
from hubwizard.actions.swarm import api_call
from hubwizard.actions.swarm_managers import HUB_LABEL, pin_hub_node
from hubwizard.core.config import Site
from hubwizard.core.endpoint import Choice, choose
from hubwizard.core.secrets import made_once
from hubwizard.engine.calls import CallResult, StepContext, register
from hubwizard.remote.dockerapi import client_for

SPEC_LABEL = "org.hubwizard.spec"  # digest of the hub service's definition
DATA_VOLUME = "jupyterhub-data"
HUB_PORT = 8000
PORT_GUARD_UNIT = "/etc/systemd/system/hubwizard-hub-port.service"


def secret_name(base: str, value: str) -> str:
    """Docker secrets cannot change: a new value gets a new name (a short digest suffix)."""
    return f"{base}-{hashlib.sha256(value.encode()).hexdigest()[:10]}"


def api_token(ctx: StepContext, *, create: bool) -> str | None:
    """The hub API token of the end-to-end check: from the secrets store, made once if absent."""
    import secrets as pysecrets

    return made_once(ctx.secrets, "hub_api_token", lambda: pysecrets.token_hex(32), create=create)


def users_token(ctx: StepContext, *, create: bool) -> str | None:
    """The hub API token apply changes the user lists with (actions.hub_users): a hub admin,
    apart from the check's limited token, made once."""
    import secrets as pysecrets

    return made_once(ctx.secrets, "hub_users_token", lambda: pysecrets.token_hex(32), create=create)


def hub_secrets(ctx: StepContext, *, create: bool) -> dict[str, str]:
    """Docker secret target name -> value, for the hub service."""
    from hubwizard.core.render import API_TOKEN_SECRET_NAME, OAUTH_SECRET_NAME, USERS_TOKEN_SECRET_NAME

    out = {}
    token = api_token(ctx, create=create)
    if token:
        out[API_TOKEN_SECRET_NAME] = token
    users = users_token(ctx, create=create) if ctx.site.site.track != "classic" else None
    if users:
        out[USERS_TOKEN_SECRET_NAME] = users
    if ctx.site.oauth.provider != "dummy":
        out[OAUTH_SECRET_NAME] = ctx.secrets.get("oauth_client_secret") or ""
    return out


def nodes_mount_nfs(ctx: StepContext) -> bool:
    """Users' homes are NFS volumes, unless the site is the container lab that says it cannot
    ([storage] lab_without_nfs_client). Never probed here: a node that cannot mount NFS fails
    step storage-clients with the fix, it does not silently turn the volumes off."""
    return not ctx.site.storage.lab_without_nfs_client


def service_args(site: Site, image_ref: str, secrets: dict[str, str], nfs_volumes: bool,
                 endpoint_mode: str = "dnsrr") -> list[str]:
    """The `docker service create` arguments of the hub (without the spec label)."""
    from hubwizard.core.render import HUB_SERVICE

    args = [
        "--name", HUB_SERVICE, "--detach", "--with-registry-auth",
        "--constraint", "node.role==manager",
        # vip: the name "jupyterhub" resolves to a virtual IP (IPVS); dnsrr: to the task itself
        "--endpoint-mode", endpoint_mode,
        "--network", site.hub.network,
        # host mode: port 8000 exists on the hub only; the DOCKER-USER rule keeps it off the
        # public interfaces, nginx on the hub reaches it on 127.0.0.1
        "--publish", f"mode=host,target={HUB_PORT},published={HUB_PORT}",
        "--mount", "type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock",
        "--mount", f"type=volume,source={DATA_VOLUME},target=/srv/jupyterhub/data",
    ]
    if site.swarm.managers > 1:  # other managers exist: the hub and its database volume stay on the hub
        args[6:6] = ["--constraint", f"node.labels.{HUB_LABEL}==true"]
    if site.storage.kind == "nfs":
        path = site.storage.path
        if site.nfs_host.name == site.hub_host.name:
            args += ["--mount", f"type=bind,source={path},target={path}"]
        args += ["--env", f"HUBWIZARD_NFS_ROOT={path}", "--env", f"HUBWIZARD_NFS_VOLUMES={int(nfs_volumes)}"]
    for target, value in sorted(secrets.items()):
        args += ["--secret", f"source={secret_name(target, value)},target={target},mode=0400"]
    return [*args, image_ref]


def spec_digest(args: list[str]) -> str:
    return hashlib.sha256("\0".join(args).encode()).hexdigest()[:16]


def _image_ref(ctx: StepContext) -> str | None:
    """The hub image pinned by its registry digest: a new push means a new service spec."""
    client = client_for(ctx.transport, timeout=600)
    digests = local_repo_digests(client, ctx.site.images.hub)
    if not digests:
        return None
    return f"{ctx.site.images.hub}@{digests[0]}" if "@" not in ctx.site.images.hub else ctx.site.images.hub


def _current_spec(ctx: StepContext) -> str | None:
    from hubwizard.core.render import HUB_SERVICE

    fmt = "{{index .Spec.Labels \"" + SPEC_LABEL + "\"}}"
    res = ctx.run(f"docker service inspect --format {shlex.quote(fmt)} {HUB_SERVICE}", sudo=True)
    return res.stdout.strip() if res.ok else None


def endpoint(ctx: StepContext) -> Choice:
    """The endpoint mode of the hub and users' servers, from [swarm] endpoint_mode and each
    swarm host's IPVS (engine.facts)."""
    return choose(ctx.site, ctx.facts.ipvs)


def _wanted(ctx: StepContext, create: bool, mode: str) -> tuple[list[str], dict[str, str]] | None:
    image = _image_ref(ctx)
    if image is None:
        return None
    secrets = hub_secrets(ctx, create=create)
    return service_args(ctx.site, image, secrets, nodes_mount_nfs(ctx), mode), secrets


@api_call("hub_service_current")  # no Docker yet: a failed check that says so
def hub_service_current(ctx: StepContext) -> CallResult:
    """Check: the service runs the current image, secrets, mounts, endpoint mode; port guard in
    place. Its message ends with the endpoint mode and why (plan shows it)."""
    choice = endpoint(ctx)
    checked = _service_current(ctx, choice)
    return CallResult(checked.ok, f"{checked.message}; {choice.line}")


def _service_current(ctx: StepContext, choice: Choice) -> CallResult:
    if choice.blocked:
        return CallResult(False, choice.refusal())
    wanted = _wanted(ctx, create=False, mode=choice.mode)
    if wanted is None:
        return CallResult(False, f"{ctx.site.images.hub} is not on the hub: run the hub-image step")
    if api_token(ctx, create=False) is None:
        return CallResult(False, "no hub_api_token in the secrets store yet")
    have, want = _current_spec(ctx), spec_digest(wanted[0])
    if have is None:
        return CallResult(False, "service jupyterhub does not exist")
    if have != want:
        return CallResult(False, f"service jupyterhub has spec {have}, wanted {want} (image, secrets, mounts or "
                          "endpoint mode changed)")
    if not ctx.run(_GUARD_CHECK, sudo=True).ok:
        return CallResult(False, "the rules guarding port 8000 (DOCKER-USER, ip6tables INPUT) are missing")
    return CallResult(True, f"service jupyterhub spec {want}")


_GUARD_RULE = f"DOCKER-USER -p tcp -m conntrack --ctstate DNAT --ctorigdstport {HUB_PORT} -j DROP"
# IPv6: docker-proxy listens on [::]:8000 itself (no DNAT, so DOCKER-USER never sees it): refuse
# it in INPUT unless it comes over loopback; and where Docker does DNAT IPv6, drop that too.
_GUARD6_RULE = f"INPUT -p tcp --dport {HUB_PORT} ! -i lo -j REJECT --reject-with tcp-reset"
_GUARD6_DNAT = _GUARD_RULE
_HAS_IP6 = "ip6tables -L INPUT -n >/dev/null 2>&1"
_GUARD6_CHECK = f"{{ ! {_HAS_IP6} || ip6tables -C {_GUARD6_RULE}; }}"
_GUARD_CHECK = f"iptables -C {_GUARD_RULE} && {_GUARD6_CHECK}"
_GUARD_SCRIPT = (
    f"iptables -N DOCKER-USER 2>/dev/null; iptables -C {_GUARD_RULE} 2>/dev/null || iptables -I {_GUARD_RULE}; "
    f"if {_HAS_IP6}; then ip6tables -C {_GUARD6_RULE} 2>/dev/null || ip6tables -I {_GUARD6_RULE}; "
    f"if ip6tables -L DOCKER-USER -n >/dev/null 2>&1; then ip6tables -C {_GUARD6_DNAT} 2>/dev/null "
    f"|| ip6tables -I {_GUARD6_DNAT}; fi; fi; iptables -C {_GUARD_RULE}"
)
PORT_GUARD = f"""\
# Written by hubwizard: keep the JupyterHub service's port {HUB_PORT} off the public interfaces.
# The hub service publishes {HUB_PORT} in host mode (Docker binds it on every interface); this
# rule drops any connection forwarded to it from outside, so only nginx on this host
# (through 127.0.0.1, which is not forwarded) reaches the hub. Over IPv6 docker-proxy listens on
# [::]:{HUB_PORT} itself: an ip6tables INPUT rule refuses it except over loopback.
# Re-applied whenever Docker starts.
[Unit]
Description=hubwizard: JupyterHub port {HUB_PORT} reachable from this host only
After=docker.service
PartOf=docker.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c '{_GUARD_SCRIPT}'

[Install]
WantedBy=docker.service
"""


def _ensure_secrets(ctx: StepContext, secrets: dict[str, str]) -> None:
    for target, value in secrets.items():
        name = secret_name(target, value)
        if not ctx.run(f"docker secret inspect {name} >/dev/null 2>&1", sudo=True).ok:
            res = ctx.run(f"docker secret create --label org.hubwizard.secret={target} {name} -", sudo=True,
                          stdin=value)
            if not res.ok:
                raise RuntimeError(f"docker secret create {name} failed: {res.output}")


def _users_before_restart(ctx: StepContext) -> None:
    """Before a hub (re)starts: users the site file no longer names are deleted from the running
    hub (a new hub lets in every user its database knows: allow_existing_users), and the site's
    lists are written where the new hub reads them at start-up."""
    from hubwizard.actions.hub_users import sync_users, write_users_file

    sync_users(ctx, quiet=True)
    write_users_file(ctx)


def _remove_service(ctx: StepContext) -> None:
    from hubwizard.core.render import HUB_SERVICE

    ctx.run(f"docker service rm {HUB_SERVICE} >/dev/null 2>&1", sudo=True)
    _wait_stopped(ctx)


def _wait_stopped(ctx: StepContext) -> None:
    """The hub's container is gone (a new one can publish the host port; sqlite is not in use)."""
    from hubwizard.core.render import HUB_SERVICE

    fmt = shlex.quote("label=com.docker.swarm.service.name=" + HUB_SERVICE)
    ctx.run(f"for i in $(seq 60); do [ -z \"$(docker ps -q --filter {fmt})\" ] && break; sleep 1; done", sudo=True)


def _prune_secrets(ctx: StepContext, keep: Iterable[str]) -> None:
    keep = set(keep)
    res = ctx.run("docker secret ls --filter label=org.hubwizard.secret --format '{{.Name}}'", sudo=True)
    for name in res.stdout.split():
        if name not in keep:
            ctx.run(f"docker secret rm {shlex.quote(name)} >/dev/null 2>&1", sudo=True)


def _key(flag: str, value: str) -> str:
    """What `docker service update --FLAG-rm` takes to remove a line's setting."""
    fields = dict(f.split("=", 1) for f in value.split(",") if "=" in f)
    return {"env": value.split("=", 1)[0], "mount": fields.get("target", value),
            "secret": fields.get("source", value), "publish": fields.get("target", value)}.get(flag, value)


def update_flags(have: Iterable[str], want: Iterable[str]) -> list[str] | None:
    """`docker service update` flags that turn the running spec's lines (hub_spec.lines_from_*)
    into the wanted ones; None when only a new service can (its name changed, or its endpoint
    mode goes from vip to dnsrr).

    dnsrr -> vip is an update: Swarm allocates the virtual IP and rolls the task (seen with
    Docker 20.10: UpdateStatus goes updating -> completed; stop-first frees the host port).

    Why update and not re-create: the service keeps its identity, Swarm stops the old task and
    starts the new one, and with cleanup_servers = False users' servers never notice."""
    have_set, want_set = set(have), set(want)
    if "endpoint-mode: vip" in have_set and "endpoint-mode: dnsrr" in want_set:
        return None  # vip -> dnsrr in place leaves the old VIP in Swarm's DNS (moby#38575): a new service
    flags: list[str] = []
    for line in sorted(have_set - want_set):
        flag, _, value = line.partition(": ")
        if flag in ("name", "image", "endpoint-mode"):
            continue  # replaced below, never removed
        flags += [f"--{flag}-rm", _key(flag, value)]
    for line in sorted(want_set - have_set):
        flag, _, value = line.partition(": ")
        if flag == "name":
            return None
        flags += [f"--{flag}", value] if flag in ("image", "endpoint-mode") else [f"--{flag}-add", value]
    return flags


DB = "/srv/jupyterhub/data/jupyterhub.sqlite"
# Run in the NEW hub image while no hub runs: a timestamped copy of the database, then
# JupyterHub's own schema upgrade; a failed upgrade puts the copy back.
UPGRADE_SCRIPT = (
    f'set -e; db={DB}; if [ ! -f "$db" ]; then echo "no database yet"; exit 0; fi; '
    'copy="$db.before-upgrade-$(date -u +%Y%m%dT%H%M%SZ)"; cp -p "$db" "$copy"; echo "database copied to $copy"; '
    'cd /tmp; jupyterhub upgrade-db --db="sqlite:///$db" 2>&1 '
    '|| { cp -p "$copy" "$db"; echo "upgrade-db failed: database restored from $copy"; exit 1; }'
)


def jupyterhub_version(ctx: StepContext, image: str) -> str | None:
    """`jupyterhub --version` of an image on the hub (None when it cannot run)."""
    res = ctx.run(f"docker run --rm --network none --entrypoint jupyterhub {shlex.quote(image)} --version", sudo=True)
    lines = res.stdout.strip().splitlines() if res.ok else []
    return lines[-1].strip() if lines else None


def upgrade_db(ctx: StepContext, old_image: str, new_image: str) -> CallResult | None:
    """Before a hub image with another JupyterHub version starts: stop the hub (users' servers
    keep running), copy the database, run `jupyterhub upgrade-db` from the new image. None
    when the version is the same (nothing to do)."""
    from hubwizard.core.render import HUB_SERVICE

    old, new = jupyterhub_version(ctx, old_image), jupyterhub_version(ctx, new_image)
    if new is None:
        return CallResult(False, f"`jupyterhub --version` does not run in {new_image} on {ctx.host.name}: "
                          "the new hub image is broken; re-run the hub-image step")
    if old == new:
        return None
    ctx.run(f"docker service scale --detach {HUB_SERVICE}=0", sudo=True)
    _wait_stopped(ctx)
    mount = f"type=volume,source={DATA_VOLUME},target={Path(DB).parent}"
    res = ctx.run(f"docker run --rm --network none --mount {mount} --entrypoint sh {shlex.quote(new_image)} "
                  f"-c {shlex.quote(UPGRADE_SCRIPT)}", sudo=True)
    if not res.ok:
        ctx.run(f"docker service scale --detach {HUB_SERVICE}=1", sudo=True)  # the old hub, its database as it was
        return CallResult(False, f"jupyterhub upgrade-db from {old} to {new} failed on {ctx.host.name}; the hub "
                          f"runs the previous image again with its database restored.\n{res.output[-1500:]}")
    copy = next((w for w in res.stdout.split() if ".before-upgrade-" in w), "")
    return CallResult(True, f"database upgraded from JupyterHub {old} to {new} (copy kept: {copy or 'no database yet'})")


def _update_finished(ctx: StepContext, timeout: float = 300) -> str:
    """The service update's final state ("completed", "paused", "rollback_completed"...): until
    then the old task may still answer, and verify would check the hub being replaced."""
    from hubwizard.core.render import HUB_SERVICE

    fmt = shlex.quote("{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}")
    deadline, state = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        state = ctx.run(f"docker service inspect --format {fmt} {HUB_SERVICE}", sudo=True).stdout.strip()
        if state and state not in ("updating", "rollback_started"):
            return state
        ctx.progress("updating jupyterhub in place", timeout - (deadline - time.monotonic()), timeout)
        time.sleep(2)
    return state


def _running_image(ctx: StepContext) -> str | None:
    from hubwizard.core.render import HUB_SERVICE

    fmt = shlex.quote("{{.Spec.TaskTemplate.ContainerSpec.Image}}")
    res = ctx.run(f"docker service inspect --format {fmt} {HUB_SERVICE}", sudo=True)
    return res.stdout.strip() or None if res.ok else None


def _update_in_place(ctx: StepContext, args: list[str], want: str) -> CallResult | None:
    """Update the running service to ``args``; None when there is none to update."""
    from hubwizard.actions.hub_spec import _current, lines_from_args
    from hubwizard.core.render import HUB_SERVICE

    now = _current(ctx)
    if not now:
        return None
    flags = update_flags(now.splitlines(), lines_from_args(args))
    if flags is None:
        return None
    old_image, notes = _running_image(ctx), []
    if "--image" in flags and old_image:
        upgraded = upgrade_db(ctx, old_image, args[-1])
        if upgraded is not None and not upgraded.ok:
            return upgraded
        notes += [upgraded.message] if upgraded else []
    cmd = ["docker", "service", "update", "--detach", "--with-registry-auth", "--replicas", "1", "--label-add",
           f"{SPEC_LABEL}={want}", *flags, HUB_SERVICE]
    res = ctx.run(shlex.join(cmd), sudo=True)
    if not res.ok:
        return CallResult(False, f"docker service update {HUB_SERVICE} failed: {res.output}")
    state = _update_finished(ctx) if flags else "completed"  # a label alone starts no new task
    if state != "completed":
        logs = ctx.run(f"docker service ps --no-trunc {HUB_SERVICE} | head -5", sudo=True).output
        return CallResult(False, f"docker service update {HUB_SERVICE} ended {state or 'unfinished'} "
                          f"(the new hub does not start?)\n{logs}")
    changed = ", ".join(sorted({f.lstrip("-").removesuffix("-add").removesuffix("-rm") for f in flags[::2]}))
    notes.append(f"service jupyterhub updated in place ({changed or 'label'}; spec {want}); users' servers keep running")
    return CallResult(True, "; ".join(notes), changed=True)


@register("hub_service")
def hub_service(ctx: StepContext) -> CallResult:
    """Apply: secrets, the port guard, and the service: updated in place when it exists (users'
    servers keep running), created when it does not."""
    choice = endpoint(ctx)
    if choice.blocked:  # before anything changes
        return CallResult(False, choice.refusal())
    wanted = _wanted(ctx, create=True, mode=choice.mode)
    if wanted is None:
        return CallResult(False, f"{ctx.site.images.hub} is not on the hub: run the hub-image step first")
    args, secrets = wanted
    ctx.transport.put(PORT_GUARD.encode(), PORT_GUARD_UNIT, mode=0o644, sudo=True)
    unit = Path(PORT_GUARD_UNIT).name  # restart: a unit already active from an older version runs its new rules
    res = ctx.run(f"systemctl daemon-reload && systemctl enable {unit} && systemctl restart {unit} && {_GUARD_CHECK}")
    if not res.ok:
        return CallResult(False, f"cannot install the port-8000 guard (IPv4 and IPv6): {res.output}")
    _ensure_secrets(ctx, secrets)
    want = spec_digest(args)
    if _current_spec(ctx) == want:
        return CallResult(True, f"service jupyterhub already current; {choice.line}", changed=False)
    _users_before_restart(ctx)
    if ctx.site.swarm.managers > 1:
        pin_hub_node(ctx)
    updated = _update_in_place(ctx, args, want)
    if updated is not None:
        if updated.ok:
            _prune_secrets(ctx, (secret_name(t, v) for t, v in secrets.items()))
        return updated
    _remove_service(ctx)
    cmd = "docker service create --label " + shlex.quote(f"{SPEC_LABEL}={want}") + " " + shlex.join(args)
    res = ctx.run(cmd, sudo=True)
    if not res.ok:
        return CallResult(False, f"docker service create failed: {res.output}")
    _prune_secrets(ctx, (secret_name(t, v) for t, v in secrets.items()))
    return CallResult(True, f"service jupyterhub created (spec {want}; {choice.line})", changed=True)


@register("hub_service_running")
def hub_service_running(ctx: StepContext, timeout: float = 240) -> CallResult:
    """Verify: `docker service ls` shows jupyterhub 1/1, the hub answers on 127.0.0.1:8000, and
    the service runs with the endpoint mode the site and the hosts' kernels call for."""
    from hubwizard.core.render import HUB_SERVICE

    fmt = shlex.quote("{{.Replicas}}")
    probe = (f"curl -fsS -m 5 http://127.0.0.1:{HUB_PORT}/hub/api 2>/dev/null || python3 -c "
             + shlex.quote("import urllib.request as u;print(u.urlopen("
                           f"'http://127.0.0.1:{HUB_PORT}/hub/api',timeout=5).read().decode())"))
    deadline = time.monotonic() + timeout
    replicas, answer = "", ""
    while time.monotonic() < deadline:
        replicas = ctx.transport.run(f"docker service ls --filter name={HUB_SERVICE} --format {fmt}",
                                     sudo=True).stdout.strip()
        if replicas.startswith("1/1"):
            res = ctx.transport.run(probe, sudo=False)
            if res.ok and '"version"' in res.stdout:
                answer = res.stdout.strip()
                ctx.progress("hub answering", 1, 1)
                return _endpoint_as_chosen(ctx, f"jupyterhub {replicas}, /hub/api says {answer[:60]}")
        ctx.progress("waiting for jupyterhub 1/1", time.monotonic() - deadline + timeout, timeout)
        time.sleep(3)
    logs = ctx.transport.run(f"docker service ps --no-trunc {HUB_SERVICE} | head -5; "
                             f"docker service logs --tail 20 {HUB_SERVICE} 2>&1", sudo=True).output
    return CallResult(False, f"jupyterhub is {replicas or 'absent'} after {timeout:.0f}s\n{logs}")


def _endpoint_as_chosen(ctx: StepContext, running: str) -> CallResult:
    """The running service's endpoint mode is the chosen one (a site or kernel change since the
    last apply shows here, with the fix)."""
    from hubwizard.core.render import HUB_SERVICE

    choice = endpoint(ctx)
    fmt = shlex.quote("{{.Spec.EndpointSpec.Mode}}")
    have = ctx.transport.run(f"docker service inspect --format {fmt} {HUB_SERVICE}", sudo=True).stdout.strip()
    if choice.blocked:
        return CallResult(False, f"{running}; but {choice.refusal()}")
    if have != choice.mode:
        return CallResult(False, f"{running}; but it runs with endpoint mode {have or 'unknown'}, wanted {choice.mode} "
                          f"({choice.line}): run `hubwizard apply --from hub-image`")
    return CallResult(True, f"{running}; {choice.line}")


@register("hub_port_private")
def hub_port_private(ctx: StepContext) -> CallResult:
    """Verify: port 8000 of the hub does not answer from another host (nor from here)."""
    hub_ip = ctx.facts.hub_ip
    for node in ctx.site.nodes:
        t = ctx.reach(node.name)
        res = t.run(f"timeout 4 bash -c {shlex.quote(f'exec 3<>/dev/tcp/{hub_ip}/{HUB_PORT}')}", sudo=False)
        if res.ok:
            return CallResult(False, f"{node.name} can connect to {hub_ip}:{HUB_PORT}: the hub port is public")
    for address in {ctx.site.hub_host.address, hub_ip}:
        try:
            socket.create_connection((address, HUB_PORT), timeout=3).close()
            return CallResult(False, f"this machine can connect to {address}:{HUB_PORT}: the hub port is public")
        except OSError:
            pass
    v6 = _port_private_v6(ctx)
    if not v6.ok:
        return v6
    return CallResult(True, f"{hub_ip}:{HUB_PORT} refuses other hosts; nginx reaches it on 127.0.0.1; {v6.message}")


def _port_private_v6(ctx: StepContext) -> CallResult:
    """Verify over IPv6: the ip6tables rule is in place, and no node connects to a global IPv6
    address of the hub on port 8000 (docker-proxy listens on [::])."""
    if not ctx.run(_HAS_IP6, sudo=True).ok:
        return CallResult(True, "IPv6 is off on the hub")
    if not ctx.run(f"ip6tables -C {_GUARD6_RULE}", sudo=True).ok:
        return CallResult(False, f"port {HUB_PORT} is open over IPv6 (docker-proxy on [::]:{HUB_PORT}): the ip6tables "
                          "rule of hubwizard-hub-port.service is missing; run `hubwizard apply --from hub-service`")
    out = ctx.run("ip -6 -o addr show scope global 2>/dev/null", sudo=False).stdout
    addresses = [f.split("/")[0] for line in out.splitlines() for f in line.split()[3:4]]
    for node in ctx.site.nodes:
        t = ctx.reach(node.name)
        for addr in addresses:
            res = t.run(f"timeout 4 bash -c {shlex.quote(f'exec 3<>/dev/tcp/{addr}/{HUB_PORT}')}", sudo=False)
            if res.ok:
                return CallResult(False, f"{node.name} can connect to [{addr}]:{HUB_PORT}: the hub port is public "
                                  "over IPv6")
    if not addresses:
        return CallResult(True, f"IPv6 port {HUB_PORT} refused except over loopback (the hub has no global IPv6 address)")
    return CallResult(True, f"[{'], ['.join(addresses)}]:{HUB_PORT} refuses the nodes")
