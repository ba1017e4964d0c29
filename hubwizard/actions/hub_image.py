"""The hub image and the pre-pull: build, push and pull through the Docker API.

Why Python and not shell in the recipes: builds, pushes and pulls stream JSON progress that
the admin should see as progress, not as walls of text, and the hub image is rebuilt only
when the digest of its build context changed.

Secrets: the registry password reaches the Docker API as an auth config in memory only,
never in a command line, an event or the journal.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hubwizard.actions.swarm import api_call
from hubwizard.core.config import Site
from hubwizard.core.events import OutputLine
from hubwizard.core.render import Facts
from hubwizard.engine.calls import CallResult, StepContext, register
from hubwizard.remote.dockerapi import client_for

CONTEXT_LABEL = "org.hubwizard.context"  # digest of the hub image's build context
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


# --------------------------------------------------------------------------- helpers


def registry_auth(ctx: StepContext, image: str) -> dict[str, str] | None:
    """The registry credentials as a Docker API auth config (memory only) for ``image``, or None
    when ``image`` lives in another registry: the site's password goes to its own registry only
    (a pull of the base image from Docker Hub must not hand Docker Hub the site's registry login)."""
    from hubwizard.actions.registry import credentials

    creds = credentials(ctx)  # a self-hosted registry: the nodes' pull-only account
    if creds is None or not same_registry(image, ctx.site.registry.url):
        return None
    return {"username": creds[0], "password": creds[1], "serveraddress": ctx.site.registry.url}


def registry_of(image: str) -> str:
    """The registry an image reference names, as Docker resolves it (``docker.io`` by default)."""
    from docker.auth import resolve_repository_name
    from docker.utils import parse_repository_tag

    name = image.split("@", 1)[0]
    registry, _ = resolve_repository_name(parse_repository_tag(name)[0])
    return _registry_key(registry)


def same_registry(image: str, registry_url: str) -> bool:
    return registry_of(image) == _registry_key(registry_url)


def _registry_key(registry: str) -> str:
    """One spelling per registry: no scheme, no trailing slash, lower case, Docker Hub's aliases as one."""
    key = registry.lower().split("://", 1)[-1].rstrip("/")
    return "docker.io" if key in ("docker.io", "index.docker.io", "registry-1.docker.io") else key


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


def build_files(site: Site, facts: Facts, ca_bundle: bytes | None) -> dict[str, bytes]:
    """The hub image's build context: name -> content (Dockerfile, requirements, config, CAs)."""
    from hubwizard.core.render import PATHS, generated_files

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


@api_call("hub_image_current")  # no Docker yet: a failed check that says so, not a traceback
def hub_image_current(ctx: StepContext) -> CallResult:
    """Check: the pushed hub image carries the digest of the current build context."""
    import docker.errors

    image = ctx.site.images.hub
    want = context_digest(_hub_files(ctx))
    client = client_for(ctx.transport, timeout=600)
    try:
        have = (client.images.get(image).labels or {}).get(CONTEXT_LABEL)
    except docker.errors.ImageNotFound:
        return CallResult(False, f"{image} is not built on this host yet")
    if have != want:
        return CallResult(False, f"{image} was built from context {have}, the current one is {want}")
    remote = registry_digest(client, image, registry_auth(ctx, image))
    if remote is None or remote not in local_repo_digests(client, image):
        return CallResult(False, f"{image} (context {want}) is not in the registry yet")
    return CallResult(True, f"{image} context {want}, registry digest {_short(remote)}")


def _upload_context(ctx: StepContext, files: dict[str, bytes]) -> None:
    """Keep the context on the hub too, where an admin can read it or rebuild by hand."""
    from hubwizard.core.render import PATHS

    for name, data in files.items():
        ctx.transport.put(data, f"{PATHS['hub_build']}/{name}", mode=0o644, sudo=True)


def _pull(ctx: StepContext, client: Any, image: str, label: str) -> str:
    """Pull with progress; an error (a refusal at the first request too: a mistyped tag is a 404
    before any chunk) comes back as its text, so the step's hints apply to it."""
    from docker.errors import APIError

    repo, tag = _split_tag(image)
    try:
        chunks = client.api.pull(repo, tag=tag, stream=True, decode=True, auth_config=registry_auth(ctx, image))
        return stream_errors(chunks, ctx, label)
    except APIError as exc:
        return f"{image}: {exc.explanation or exc}"


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
    client = client_for(ctx.transport, timeout=3600)
    err = _pull(ctx, client, site.images.hub_base, f"pull {site.images.hub_base}")
    if err:
        return CallResult(False, f"pulling the base image {site.images.hub_base} failed: {err}")
    err = _build(ctx, client, files, site.images.hub, digest)
    if err:
        return CallResult(False, f"building {site.images.hub} failed: {err}")
    repo, tag = _split_tag(site.images.hub)
    auth = registry_auth(ctx, site.images.hub)
    err = stream_errors(client.api.push(repo, tag=tag, stream=True, decode=True, auth_config=auth),
                        ctx, f"push {site.images.hub}")
    if err:
        return CallResult(False, f"pushing {site.images.hub} failed: {err}")
    return CallResult(True, f"built and pushed {site.images.hub} (context {digest})", changed=True)


# --------------------------------------------------------------------------- pre-pull


def images_for(ctx: StepContext) -> list[str]:
    """Managers (the hub) keep the hub image; every host gets each user image (the default
    and the spawn form's profiles)."""
    images = list(ctx.site.images.user_images)
    if ctx.host.role == "hub":
        images.insert(0, ctx.site.images.hub)
    return images


@api_call("images_current")
def images_current(ctx: StepContext) -> CallResult:
    """Check/verify: each image this host needs is present with the registry's digest."""
    client = client_for(ctx.transport, timeout=600)
    for image in images_for(ctx):
        auth = registry_auth(ctx, image)
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
    client = client_for(ctx.transport, timeout=3600)
    for image in images_for(ctx):
        err = _pull(ctx, client, image, f"pull {image}")
        if err:
            return CallResult(False, f"pulling {image} on {ctx.host.name} failed: {err}")
    return CallResult(True, "pulled " + ", ".join(images_for(ctx)), changed=True)
