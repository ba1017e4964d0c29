"""The hub's steps that need structured results: image build and push, pre-pull, the hub
service, the TLS, OAuth and culler probes, and the end-to-end check.

Why Python here and not shell in the recipes: builds, pushes and pulls stream JSON progress
that the admin should see as progress, not as walls of text; the hub service is updated only
when what it runs (image digest, secrets, mounts) changed, which needs a digest compare; and
the HTTPS probes run from the admin machine, where the admin's users are, not on the hub.

Secrets: the registry password reaches the Docker API as an auth config in memory only; the
hub's API token and the OAuth client secret reach the hub as Docker secrets created from
stdin. None of them is ever in a command line, an event or the journal.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import json
import shlex
import socket
import ssl
import tarfile
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hubwizard.actions import CallResult, StepContext, register
from hubwizard.config import Site
from hubwizard.events import OutputLine

CONTEXT_LABEL = "org.hubwizard.context"  # digest of the hub image's build context
SPEC_LABEL = "org.hubwizard.spec"  # digest of the hub service's definition
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
DATA_VOLUME = "jupyterhub-data"
HUB_PORT = 8000
E2E_USER = "hubwizardcheck"  # letters only: the same name in URLs, services and folders

ACME_CA_ON_HUB = "/etc/hubwizard/acme-ca.pem"
PORT_GUARD_UNIT = "/etc/systemd/system/hubwizard-hub-port.service"
# Where OAuth providers send the browser to log in (generic OIDC: from the site file).
AUTHORIZE_URLS = {
    "github": "https://github.com/login/oauth/authorize",
    "google": "https://accounts.google.com/o/oauth2/v2/auth",
    "cilogon": "https://cilogon.org/authorize",
    "globus": "https://auth.globus.org/v2/oauth2/authorize",
}


# --------------------------------------------------------------------------- helpers


def _client(ctx: StepContext, timeout: float = 600):
    from hubwizard.dockerapi import client_for

    return client_for(ctx.transport, timeout=timeout)


def registry_auth(ctx: StepContext) -> dict[str, str] | None:
    """The registry credentials as a Docker API auth config (memory only), or None."""
    user = ctx.site.registry.username
    if not user:
        return None
    password = ctx.secrets.get("registry_password") or ""
    return {"username": user, "password": password, "serveraddress": ctx.site.registry.url}


class Throttle:
    """Turns a flood of stream updates into at most one Progress event every two seconds."""

    def __init__(self, ctx: StepContext, every: float = 2.0) -> None:
        self.ctx, self.every, self.last = ctx, every, 0.0

    def __call__(self, label: str, done: float, total: float | None, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= self.every:
            self.last = now
            self.ctx.progress(label, done, total)


@dataclass
class LayerProgress:
    """Sums per-layer byte counts of a pull or push stream."""

    current: dict[str, int]
    total: dict[str, int]

    @classmethod
    def empty(cls) -> LayerProgress:
        return cls({}, {})

    def feed(self, chunk: dict[str, Any]) -> None:
        detail = chunk.get("progressDetail") or {}
        layer = chunk.get("id")
        if not layer:
            return
        if detail.get("total"):
            self.total[layer] = int(detail["total"])
            self.current[layer] = int(detail.get("current") or 0)
        elif chunk.get("status") in ("Pull complete", "Pushed", "Layer already exists", "Already exists"):
            self.current[layer] = self.total.get(layer, self.current.get(layer, 0))

    @property
    def mib(self) -> tuple[float, float]:
        return round(sum(self.current.values()) / 2**20, 1), round(sum(self.total.values()) / 2**20, 1)


def stream_errors(chunks: Iterable[dict[str, Any]], ctx: StepContext, label: str) -> str:
    """Follow a pull/push stream: progress events, status lines as output; return an error or ""."""
    layers = LayerProgress.empty()
    tick = Throttle(ctx)
    for chunk in chunks:
        if "error" in chunk:
            return str(chunk.get("error") or chunk.get("errorDetail"))
        layers.feed(chunk)
        done, total = layers.mib
        tick(f"{label} MiB", done, total or None)
        status = chunk.get("status", "")
        if status and not chunk.get("progressDetail", {}).get("total"):
            ctx.emit(OutputLine(ctx.step, ctx.host.name, "stdout", f"{chunk.get('id', '')} {status}".strip()))
    done, total = layers.mib
    tick(f"{label} MiB", done, total or None, force=True)
    return ""


def _short(digest: str) -> str:
    return digest.split(":")[-1][:12]


# --------------------------------------------------------------------------- hub image


def build_files(site: Site, facts: Any, ca_bundle: bytes | None) -> dict[str, bytes]:
    """The hub image's build context: name -> content (Dockerfile, requirements, config, CAs)."""
    from hubwizard.render import PATHS, generated_files

    build = PATHS["hub_build"] + "/"
    files = {f.path.removeprefix(build): f.content.encode() for f in generated_files(site, facts)
             if f.path.startswith(build)}
    if ca_bundle:
        # pip in the build trusts what the hub host trusts (a TLS-intercepting proxy's CA too)
        files["ca-certificates.crt"] = ca_bundle
    return files


def context_digest(files: dict[str, bytes]) -> str:
    """A digest of the build context: the image is rebuilt exactly when this changes."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()[:16]


def context_tar(files: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            tar.addfile(info, io.BytesIO(files[name]))
    buf.seek(0)
    return buf


def _hub_files(ctx: StepContext) -> dict[str, bytes]:
    res = ctx.transport.run(f"cat {CA_BUNDLE} 2>/dev/null", sudo=False)
    return build_files(ctx.site, ctx.facts, res.stdout.encode() if res.ok and res.stdout else None)


def registry_digest(client: Any, image: str, auth: dict[str, str] | None) -> str | None:
    """The digest the registry holds for ``image`` now (None: not there or not reachable)."""
    import docker.errors

    try:
        return client.images.get_registry_data(image, auth_config=auth).id
    except docker.errors.APIError:
        return None


def local_repo_digests(client: Any, image: str) -> list[str]:
    import docker.errors

    try:
        return [d.split("@", 1)[1] for d in client.images.get(image).attrs.get("RepoDigests") or []]
    except docker.errors.ImageNotFound:
        return []


@register("hub_image_current")
def hub_image_current(ctx: StepContext) -> CallResult:
    """Check: the pushed hub image carries the digest of the current build context."""
    import docker.errors

    image = ctx.site.images.hub
    want = context_digest(_hub_files(ctx))
    client = _client(ctx)
    try:
        have = (client.images.get(image).labels or {}).get(CONTEXT_LABEL)
    except docker.errors.ImageNotFound:
        return CallResult(False, f"{image} is not built on this host yet")
    if have != want:
        return CallResult(False, f"{image} was built from context {have}, the current one is {want}")
    remote = registry_digest(client, image, registry_auth(ctx))
    if remote is None or remote not in local_repo_digests(client, image):
        return CallResult(False, f"{image} (context {want}) is not in the registry yet")
    return CallResult(True, f"{image} context {want}, registry digest {_short(remote)}")


def _upload_context(ctx: StepContext, files: dict[str, bytes]) -> None:
    """Keep the context on the hub too, where an admin can read it or rebuild by hand."""
    from hubwizard.render import PATHS

    for name, data in files.items():
        ctx.transport.put(data, f"{PATHS['hub_build']}/{name}", mode=0o644, sudo=True)


def _pull(ctx: StepContext, client: Any, image: str, label: str) -> str:
    repo, tag = _split_tag(image)
    chunks = client.api.pull(repo, tag=tag, stream=True, decode=True, auth_config=registry_auth(ctx))
    return stream_errors(chunks, ctx, label)


def _split_tag(image: str) -> tuple[str, str]:
    from docker.utils import parse_repository_tag

    repo, tag = parse_repository_tag(image)
    return repo, tag or "latest"


def _build(ctx: StepContext, client: Any, files: dict[str, bytes], image: str, digest: str) -> str:
    """docker build through the API; each "Step N/M" is progress, the rest output lines."""
    tick = Throttle(ctx, every=0.0)
    stream = client.api.build(fileobj=context_tar(files), custom_context=True, tag=image, rm=True, forcerm=True,
                              pull=False, decode=True, labels={CONTEXT_LABEL: digest})
    for chunk in stream:
        if "error" in chunk:
            return str(chunk["error"])
        text = chunk.get("stream", "")
        for line in text.splitlines():
            if line.strip():
                ctx.emit(OutputLine(ctx.step, ctx.host.name, "stdout", line))
            if line.startswith("Step ") and "/" in line.split()[1]:
                n, m = line.split()[1].split("/")
                tick("build steps", float(n), float(m))
    return ""


@register("build_hub_image")
def build_hub_image(ctx: StepContext) -> CallResult:
    """Apply: upload the context, pull the base, build (labelled with the context digest), push."""
    site = ctx.site
    files = _hub_files(ctx)
    digest = context_digest(files)
    _upload_context(ctx, files)
    client = _client(ctx, timeout=3600)
    err = _pull(ctx, client, site.images.hub_base, f"pull {site.images.hub_base}")
    if err:
        return CallResult(False, f"pulling the base image {site.images.hub_base} failed: {err}")
    err = _build(ctx, client, files, site.images.hub, digest)
    if err:
        return CallResult(False, f"building {site.images.hub} failed: {err}")
    repo, tag = _split_tag(site.images.hub)
    err = stream_errors(client.api.push(repo, tag=tag, stream=True, decode=True, auth_config=registry_auth(ctx)),
                        ctx, f"push {site.images.hub}")
    if err:
        return CallResult(False, f"pushing {site.images.hub} failed: {err}")
    return CallResult(True, f"built and pushed {site.images.hub} (context {digest})", changed=True)


# --------------------------------------------------------------------------- pre-pull


def images_for(ctx: StepContext) -> list[str]:
    """Managers (the hub) keep the hub image; every host gets the single-user image."""
    images = [ctx.site.images.singleuser]
    if ctx.host.role == "hub":
        images.insert(0, ctx.site.images.hub)
    return images


@register("images_current")
def images_current(ctx: StepContext) -> CallResult:
    """Check/verify: each image this host needs is present with the registry's digest."""
    client = _client(ctx)
    auth = registry_auth(ctx)
    for image in images_for(ctx):
        have = local_repo_digests(client, image)
        if not have:
            return CallResult(False, f"{image} is not on {ctx.host.name}")
        remote = registry_digest(client, image, auth)
        if remote is None:
            return CallResult(False, f"{image}: the registry does not answer for it (login? network?)")
        if remote not in have:
            return CallResult(False, f"{image} on {ctx.host.name} is older than the registry's {_short(remote)}")
    return CallResult(True, ", ".join(images_for(ctx)) + " present with the registry's digest")


@register("prepull_images")
def prepull_images(ctx: StepContext) -> CallResult:
    """Apply: pull what this host needs, so a user's first spawn does not wait on a pull."""
    client = _client(ctx, timeout=3600)
    for image in images_for(ctx):
        err = _pull(ctx, client, image, f"pull {image}")
        if err:
            return CallResult(False, f"pulling {image} on {ctx.host.name} failed: {err}")
    return CallResult(True, "pulled " + ", ".join(images_for(ctx)), changed=True)


# --------------------------------------------------------------------------- hub service


def secret_name(base: str, value: str) -> str:
    """Docker secrets cannot change: a new value gets a new name (a short digest suffix)."""
    return f"{base}-{hashlib.sha256(value.encode()).hexdigest()[:10]}"


def api_token(ctx: StepContext, *, create: bool) -> str | None:
    """The hub API token of the end-to-end check: from the secrets store, made once if absent."""
    token = ctx.secrets.get("hub_api_token", required=False)
    if token or not create:
        return token
    import secrets as pysecrets

    from hubwizard.secrets import write_secrets

    token = pysecrets.token_hex(32)
    ctx.secrets.add_runtime("hub_api_token", token)
    path = getattr(ctx.secrets, "path", None)
    if path is not None:
        write_secrets(Path(path).with_name(Path(path).name.removesuffix(".secrets.toml") + ".toml"),
                      {"hub_api_token": token})
    return token


def hub_secrets(ctx: StepContext, *, create: bool) -> dict[str, str]:
    """Docker secret target name -> value, for the hub service."""
    from hubwizard.render import API_TOKEN_SECRET_NAME, OAUTH_SECRET_NAME

    out = {}
    token = api_token(ctx, create=create)
    if token:
        out[API_TOKEN_SECRET_NAME] = token
    if ctx.site.oauth.provider != "dummy":
        out[OAUTH_SECRET_NAME] = ctx.secrets.get("oauth_client_secret") or ""
    return out


def nodes_mount_nfs(ctx: StepContext) -> bool:
    """Can the worker nodes mount NFS volumes (kernel client present or loadable)?"""
    for node in ctx.site.nodes or [ctx.site.hub_host]:
        t = ctx.connections.get(node.name) if ctx.connections else ctx.transport
        if not t.run("grep -qw nfs4 /proc/filesystems || modprobe -q nfs4", sudo=True).ok:
            return False
    return True


def service_args(site: Site, image_ref: str, secrets: dict[str, str], nfs_volumes: bool) -> list[str]:
    """The `docker service create` arguments of the hub (without the spec label)."""
    from hubwizard.render import HUB_SERVICE

    args = [
        "--name", HUB_SERVICE, "--detach", "--with-registry-auth",
        "--constraint", "node.role==manager",
        # the name "jupyterhub" resolves to the task itself, no virtual IP (needs no IPVS)
        "--endpoint-mode", "dnsrr",
        "--network", site.hub.network,
        # host mode: port 8000 exists on the hub only; the DOCKER-USER rule keeps it off the
        # public interfaces, nginx on the hub reaches it on 127.0.0.1
        "--publish", f"mode=host,target={HUB_PORT},published={HUB_PORT}",
        "--mount", "type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock",
        "--mount", f"type=volume,source={DATA_VOLUME},target=/srv/jupyterhub/data",
    ]
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
    client = _client(ctx)
    digests = local_repo_digests(client, ctx.site.images.hub)
    if not digests:
        return None
    return f"{ctx.site.images.hub}@{digests[0]}" if "@" not in ctx.site.images.hub else ctx.site.images.hub


def _current_spec(ctx: StepContext) -> str | None:
    from hubwizard.render import HUB_SERVICE

    fmt = "{{index .Spec.Labels \"" + SPEC_LABEL + "\"}}"
    res = ctx.run(f"docker service inspect --format {shlex.quote(fmt)} {HUB_SERVICE}", sudo=True)
    return res.stdout.strip() if res.ok else None


def _wanted(ctx: StepContext, create: bool) -> tuple[list[str], dict[str, str]] | None:
    image = _image_ref(ctx)
    if image is None:
        return None
    secrets = hub_secrets(ctx, create=create)
    return service_args(ctx.site, image, secrets, nodes_mount_nfs(ctx)), secrets


@register("hub_service_current")
def hub_service_current(ctx: StepContext) -> CallResult:
    """Check: the service runs the current image, secrets, mounts; port guard in place."""
    wanted = _wanted(ctx, create=False)
    if wanted is None:
        return CallResult(False, f"{ctx.site.images.hub} is not on the hub: run the hub-image step")
    if api_token(ctx, create=False) is None:
        return CallResult(False, "no hub_api_token in the secrets store yet")
    have, want = _current_spec(ctx), spec_digest(wanted[0])
    if have is None:
        return CallResult(False, "service jupyterhub does not exist")
    if have != want:
        return CallResult(False, f"service jupyterhub has spec {have}, wanted {want} (image, secrets or mounts changed)")
    if not ctx.run(_GUARD_CHECK, sudo=True).ok:
        return CallResult(False, "the DOCKER-USER rule guarding port 8000 is missing")
    return CallResult(True, f"service jupyterhub spec {want}")


_GUARD_RULE = f"DOCKER-USER -p tcp -m conntrack --ctstate DNAT --ctorigdstport {HUB_PORT} -j DROP"
_GUARD_CHECK = f"iptables -C {_GUARD_RULE}"
_GUARD_SCRIPT = f"iptables -N DOCKER-USER 2>/dev/null; iptables -C {_GUARD_RULE} 2>/dev/null || iptables -I {_GUARD_RULE}"
PORT_GUARD = f"""\
# Written by hubwizard: keep the JupyterHub service's port {HUB_PORT} off the public interfaces.
# The hub service publishes {HUB_PORT} in host mode (Docker binds it on every interface); this
# rule drops any connection forwarded to it from outside, so only nginx on this host
# (through 127.0.0.1, which is not forwarded) reaches the hub. Re-applied whenever Docker starts.
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


def _remove_service(ctx: StepContext) -> None:
    from hubwizard.render import HUB_SERVICE

    ctx.run(f"docker service rm {HUB_SERVICE} >/dev/null 2>&1", sudo=True)
    # the task's container must be gone before a new one can publish the same host port
    fmt = shlex.quote("label=com.docker.swarm.service.name=" + HUB_SERVICE)
    ctx.run(f"for i in $(seq 60); do [ -z \"$(docker ps -q --filter {fmt})\" ] && break; sleep 1; done", sudo=True)


def _prune_secrets(ctx: StepContext, keep: Iterable[str]) -> None:
    keep = set(keep)
    res = ctx.run("docker secret ls --filter label=org.hubwizard.secret --format '{{.Name}}'", sudo=True)
    for name in res.stdout.split():
        if name not in keep:
            ctx.run(f"docker secret rm {shlex.quote(name)} >/dev/null 2>&1", sudo=True)


@register("hub_service")
def hub_service(ctx: StepContext) -> CallResult:
    """Apply: secrets, the port guard, and the service (re-created when its spec changed)."""
    wanted = _wanted(ctx, create=True)
    if wanted is None:
        return CallResult(False, f"{ctx.site.images.hub} is not on the hub: run the hub-image step first")
    args, secrets = wanted
    ctx.transport.put(PORT_GUARD.encode(), PORT_GUARD_UNIT, mode=0o644, sudo=True)
    res = ctx.run(f"systemctl daemon-reload && systemctl enable --now {Path(PORT_GUARD_UNIT).name} && {_GUARD_CHECK}")
    if not res.ok:
        return CallResult(False, f"cannot install the port-8000 guard: {res.output}")
    _ensure_secrets(ctx, secrets)
    want = spec_digest(args)
    if _current_spec(ctx) == want:
        return CallResult(True, "service jupyterhub already current", changed=False)
    _remove_service(ctx)
    cmd = "docker service create --label " + shlex.quote(f"{SPEC_LABEL}={want}") + " " + shlex.join(args)
    res = ctx.run(cmd, sudo=True)
    if not res.ok:
        return CallResult(False, f"docker service create failed: {res.output}")
    _prune_secrets(ctx, (secret_name(t, v) for t, v in secrets.items()))
    return CallResult(True, f"service jupyterhub created (spec {want})", changed=True)


@register("hub_service_running")
def hub_service_running(ctx: StepContext, timeout: float = 240) -> CallResult:
    """Verify: `docker service ls` shows jupyterhub 1/1 and the hub answers on 127.0.0.1:8000."""
    from hubwizard.render import HUB_SERVICE

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
                return CallResult(True, f"jupyterhub {replicas}, /hub/api says {answer[:60]}")
        ctx.progress("waiting for jupyterhub 1/1", time.monotonic() - deadline + timeout, timeout)
        time.sleep(3)
    logs = ctx.transport.run(f"docker service ps --no-trunc {HUB_SERVICE} | head -5; "
                             f"docker service logs --tail 20 {HUB_SERVICE} 2>&1", sudo=True).output
    return CallResult(False, f"jupyterhub is {replicas or 'absent'} after {timeout:.0f}s\n{logs}")


@register("hub_port_private")
def hub_port_private(ctx: StepContext) -> CallResult:
    """Verify: port 8000 of the hub does not answer from another host (nor from here)."""
    hub_ip = ctx.facts.hub_ip
    for node in ctx.site.nodes:
        t = ctx.connections.get(node.name)
        res = t.run(f"timeout 4 bash -c {shlex.quote(f'exec 3<>/dev/tcp/{hub_ip}/{HUB_PORT}')}", sudo=False)
        if res.ok:
            return CallResult(False, f"{node.name} can connect to {hub_ip}:{HUB_PORT}: the hub port is public")
    for address in {ctx.site.hub_host.address, hub_ip}:
        try:
            socket.create_connection((address, HUB_PORT), timeout=3).close()
            return CallResult(False, f"this machine can connect to {address}:{HUB_PORT}: the hub port is public")
        except OSError:
            pass
    return CallResult(True, f"{hub_ip}:{HUB_PORT} refuses other hosts; nginx reaches it on 127.0.0.1")


# --------------------------------------------------------------------------- HTTPS


@register("upload_acme_ca")
def upload_acme_ca(ctx: StepContext) -> CallResult:
    """Apply: the CA bundle certbot trusts for the ACME server (lab, private CA)."""
    bundle = ctx.site.https.acme_ca_bundle
    if not bundle:
        return CallResult(True, "no acme_ca_bundle: certbot uses the system trust", changed=False)
    try:
        data = Path(bundle).expanduser().read_bytes()
    except OSError as exc:
        return CallResult(False, f"cannot read https.acme_ca_bundle {bundle}: {exc}")
    ctx.transport.put(data, ACME_CA_ON_HUB, mode=0o644, sudo=True)
    return CallResult(True, f"{ACME_CA_ON_HUB} uploaded", changed=True)


def trust_roots(site: Site) -> list[Path]:
    """Extra roots a TLS check trusts: the lab's pebble root beside its ACME CA bundle."""
    bundle = site.https.acme_ca_bundle
    if not bundle:
        return []
    root = Path(bundle).expanduser().with_name("pebble-root.pem")
    return [root] if root.exists() else []


def hub_address(site: Site) -> str:
    """Where the admin reaches the domain: DNS if it resolves, else the hub's SSH address."""
    try:
        return socket.getaddrinfo(site.site.domain, 443, type=socket.SOCK_STREAM)[0][4][0]
    except OSError:
        return site.hub_host.address


def tls_context(site: Site) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    for root in trust_roots(site):
        ctx.load_verify_locations(cafile=str(root))
    return ctx


def days_left(not_after: str, now: datetime | None = None) -> int:
    """Days until an X.509 notAfter as Python's ssl module prints it ('Jun  1 12:00:00 2026 GMT')."""
    end = datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), UTC)
    return (end - (now or datetime.now(UTC))).days


@register("tls_handshake")
def tls_handshake(ctx: StepContext) -> CallResult:
    """Verify, from the admin machine: chain valid, name matches, days left."""
    site = ctx.site
    address = hub_address(site)
    try:
        with socket.create_connection((address, 443), timeout=10) as raw, \
                tls_context(site).wrap_socket(raw, server_hostname=site.site.domain) as tls:
            cert = tls.getpeercert()
            version = tls.version()
    except ssl.SSLCertVerificationError as exc:
        return CallResult(False, f"TLS to {site.site.domain} at {address}:443: {exc.verify_message} ({exc})")
    except OSError as exc:
        return CallResult(False, f"TLS to {site.site.domain} at {address}:443: {exc}")
    issuer = dict(x[0] for x in cert.get("issuer", ()))
    left = days_left(cert["notAfter"])
    if left < 7:
        return CallResult(False, f"certificate of {site.site.domain} expires in {left} days")
    return CallResult(True, f"{site.site.domain} at {address}: {version}, chain valid, issuer "
                            f"{issuer.get('commonName', '?')}, {left} days left")


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


def https(site: Site, method: str, path: str, *, token: str | None = None, body: Any = None,
          timeout: float = 30) -> HttpReply:
    """One HTTPS request to the domain (SNI and Host = domain), redirects not followed."""
    address = hub_address(site)
    conn = http.client.HTTPSConnection(site.site.domain, 443, context=tls_context(site), timeout=timeout)
    raw = socket.create_connection((address, 443), timeout=timeout)
    conn.sock = tls_context(site).wrap_socket(raw, server_hostname=site.site.domain)
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"token {token}"
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return HttpReply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


# --------------------------------------------------------------------------- OAuth


def check_redirect(location: str, site: Site) -> tuple[bool, str]:
    """Does a login redirect go to the provider with our client id and callback URL?"""
    provider = site.oauth.provider
    expected = AUTHORIZE_URLS.get(provider) or site.oauth.authorize_url or ""
    url = urllib.parse.urlsplit(location)
    want = urllib.parse.urlsplit(expected)
    query = urllib.parse.parse_qs(url.query)
    callback = f"https://{site.site.domain}/hub/oauth_callback"
    problems = []
    if (url.scheme, url.netloc, url.path) != (want.scheme, want.netloc, want.path):
        problems.append(f"goes to {url.scheme}://{url.netloc}{url.path}, not {expected}")
    if query.get("client_id") != [site.oauth.client_id]:
        problems.append(f"client_id is {query.get('client_id')}, not {site.oauth.client_id!r}")
    if query.get("redirect_uri") != [callback]:
        problems.append(f"redirect_uri is {query.get('redirect_uri')}, not {callback!r}")
    if problems:
        return False, "login redirect " + "; ".join(problems)
    return True, f"login redirects to {expected} with client_id {site.oauth.client_id} and callback {callback}"


@register("oauth_redirect")
def oauth_redirect(ctx: StepContext) -> CallResult:
    """Verify: GET /hub/oauth_login (not followed) sends the browser to the provider correctly."""
    if ctx.site.oauth.provider == "dummy":
        return CallResult(True, "provider dummy: no OAuth redirect (a lab/rehearsal login)", skipped=True)
    try:
        reply = https(ctx.site, "GET", "/hub/oauth_login")
    except OSError as exc:
        return CallResult(False, f"GET https://{ctx.site.site.domain}/hub/oauth_login: {exc}")
    if reply.status not in (301, 302, 303, 307):
        return CallResult(False, f"GET /hub/oauth_login answered {reply.status}, not a redirect: {reply.body[:200]!r}")
    ok, message = check_redirect(reply.headers.get("location", ""), ctx.site)
    return CallResult(ok, message)


# --------------------------------------------------------------------------- culler


def _hub_container(client: Any):
    from hubwizard.render import HUB_SERVICE

    found = client.containers.list(filters={"label": f"com.docker.swarm.service.name={HUB_SERVICE}"})
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
    container = _hub_container(_client(ctx))
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
                return UserTask(service.name, node.get("Description", {}).get("Hostname", "?"), node["Spec"]["Role"],
                                cpus / 1e9 if cpus else None, limits.get("MemoryBytes"))
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


def e2e_steps(ctx: StepContext, token: str) -> Iterator[str]:
    """The end-to-end check, a sentence per stage (raises on failure)."""
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
    client = _client(ctx)
    task = _wait(ctx, "finding its Swarm task", 60, lambda: _user_task(client, user))
    if site.nodes and task.role != "worker":
        raise RuntimeError(f"{user}'s server runs on {task.node} ({task.role}), not on a worker node")
    problem = limits_problem(task, site)
    if problem:
        raise RuntimeError(problem)
    yield (f"it runs as Swarm service {task.service} on {task.node} ({task.role}) "
           f"with {task.cpus:g} CPU and {site.hub.mem_limit} memory")
    reply = https(site, "GET", f"/user/{user}/api", token=token)
    if reply.status != 200 or "version" not in (reply.json() or {}):
        raise RuntimeError(f"GET /user/{user}/api: {reply.status} {reply.body[:200]!r}")
    yield f"https://{site.site.domain}/user/{user}/api answers (jupyter_server {reply.json()['version']})"
    _stop_and_delete(site, token, user, ctx)
    _remove_test_folder(ctx)
    yield f"server stopped, user {user} and its folder deleted"


@register("end_to_end")
def end_to_end(ctx: StepContext) -> CallResult:
    """Verify: a test user's server spawns on a worker, answers through HTTPS, then goes away."""
    token = api_token(ctx, create=False)
    if not token:
        return CallResult(False, "no hub_api_token in the secrets store: run the hub-service step")
    done: list[str] = []
    try:
        for stage in e2e_steps(ctx, token):
            done.append(stage)
            ctx.progress("end-to-end", len(done), 5)
            ctx.emit(OutputLine(ctx.step, ctx.host.name, "stdout", stage))
    except (OSError, RuntimeError, TimeoutError, ValueError) as exc:
        with contextlib.suppress(OSError, TimeoutError, ValueError):
            _stop_and_delete(ctx.site, token, E2E_USER, ctx)
            _remove_test_folder(ctx)
        return CallResult(False, "\n".join([*done, f"FAILED: {exc}"]))
    return CallResult(True, "; ".join(done))
