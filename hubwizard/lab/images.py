"""Images of the lab, built here and cached: no image can be pulled from a hub on this machine.

Why this shape: a Debian bookworm rootfs from debootstrap is the one base we can make offline
from a registry's point of view (only the Debian mirror is needed). It is imported once as
``hubwizard-lab/base:HASH``; every other image is a short Dockerfile on top of it. Each tag is a
content hash of its recipe (and of its parent's tag, and of the host CA bundle), so a changed
recipe rebuilds exactly what depends on it and an unchanged one costs a single lookup.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubwizard.lab import mirror as lab_mirror
from hubwizard.lab import oidc as lab_oidc

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE_LABEL = "io.hubwizard.lab.image"

Progress = Callable[[str], None]

# Packages the recipes install with apt-get: pre-downloaded (not installed) into the machines'
# /var/cache/apt/archives so a rehearsal does not wait on the mirror, and does not fail with it.
PREFETCH = "docker.io nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils nginx-light certbot xfsprogs autofs incron"



def __getattr__(name: str) -> str:
    """MIRROR and SOURCES_LIST: this machine's Debian mirror (or `lab up --mirror`), see lab/mirror.py."""
    if name == "MIRROR":
        return lab_mirror.resolve().debian
    if name == "SOURCES_LIST":
        return lab_mirror.resolve().sources_list()
    raise AttributeError(name)


APT_INSTALL = "DEBIAN_FRONTEND=noninteractive apt-get install -y -q"

# Runs once per boot before sshd and dockerd: gives each machine its own host keys and applies
# what `lab up` put in /etc/hubwizard-lab/ (admin user, sshd options, daemon.json).
SETUP_UNIT = """\
[Unit]
Description=hubwizard lab: host keys, admin user and sshd options of this machine
DefaultDependencies=no
After=local-fs.target
Before=ssh.service docker.service sysinit.target
ConditionPathExists=/etc/hubwizard-lab/setup.sh

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh /etc/hubwizard-lab/setup.sh

[Install]
WantedBy=sysinit.target
"""

POLICY_RC_D = "#!/bin/sh\\nexit 101\\n"

MACHINE_DOCKERFILE = f"""\
FROM {{parent}}
ENV container=docker
COPY hubwizard-lab-setup.service /etc/systemd/system/hubwizard-lab-setup.service
RUN printf '{POLICY_RC_D}' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \\
 && apt-get update -q \\
 && {APT_INSTALL} --no-install-recommends systemd systemd-sysv dbus openssh-server sudo \\
      iproute2 procps iputils-ping less curl gnupg lsb-release kmod \\
 && {APT_INSTALL} --download-only {PREFETCH} \\
 && systemctl enable hubwizard-lab-setup.service \\
 && systemctl mask apt-daily.timer apt-daily-upgrade.timer getty@tty1.service \\
      systemd-remount-fs.service e2scrub_reap.service systemd-firstboot.service \\
 && rm -f /etc/ssh/ssh_host_* /usr/sbin/policy-rc.d \\
 && : > /etc/machine-id && rm -f /var/lib/dbus/machine-id \\
 && echo PIP_CERT=/etc/ssl/certs/ca-certificates.crt >> /etc/environment
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
"""

MACHINE_DOCKER_DOCKERFILE = f"""\
FROM {{parent}}
RUN printf '{POLICY_RC_D}' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \\
 && {APT_INSTALL} docker.io \\
 && systemctl enable docker.service containerd.service \\
 && rm -f /usr/sbin/policy-rc.d
"""

SUPPORT_DOCKERFILE = f"""\
FROM {{parent}}
RUN apt-get update -q && {APT_INSTALL} --no-install-recommends docker-registry pebble openssl \\
 && rm -rf /var/lib/apt/lists/*
"""

JUPYTERHUB_DOCKERFILE = f"""\
FROM {{parent}}
RUN apt-get update -q && {APT_INSTALL} --no-install-recommends python3-venv \\
      node-configurable-http-proxy \\
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/jupyterhub \\
 && /opt/jupyterhub/bin/pip install --no-cache-dir -q 'jupyterhub==5.*' dockerspawner \\
      jhub-swarmspawner oauthenticator jupyterhub-idle-culler
ENV PATH=/opt/jupyterhub/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN jupyterhub --version && configurable-http-proxy --version
WORKDIR /srv/jupyterhub
EXPOSE 8000
CMD ["jupyterhub"]
"""

SINGLEUSER_DOCKERFILE = f"""\
FROM {{parent}}
RUN apt-get update -q && {APT_INSTALL} --no-install-recommends python3-venv \\
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/conda \\
 && /opt/conda/bin/pip install --no-cache-dir -q 'jupyterhub==5.*' jupyter_server notebook \\
 && useradd -m -u 1000 -s /bin/bash jovyan
ENV PATH=/opt/conda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN jupyterhub-singleuser --version
USER jovyan
WORKDIR /home/jovyan
EXPOSE 8888
CMD ["jupyterhub-singleuser"]
"""


# The lab's OpenID Connect provider: oidc-provider-mock (a maintained test provider) in a venv,
# started by oidc-lab.py with one registered client and the lab's users (hubwizard.lab.oidc).
OIDC_VERSION = "0.3.4"
OIDC_DOCKERFILE = f"""\
FROM {{parent}}
RUN apt-get update -q && {APT_INSTALL} --no-install-recommends python3-venv \\
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/oidc \\
 && /opt/oidc/bin/pip install --no-cache-dir -q 'oidc-provider-mock=={OIDC_VERSION}'
COPY oidc-lab.py /usr/local/bin/oidc-lab.py
RUN /opt/oidc/bin/python -c "import oidc_provider_mock, uvicorn"
EXPOSE 9400
CMD ["/opt/oidc/bin/python", "/usr/local/bin/oidc-lab.py"]
"""


# --base-image: a pulled Debian image made equivalent to the debootstrap base.
BASE_WRAP_DOCKERFILE = f"""\
FROM {{parent}}
COPY ca-certificates.crt /usr/local/share/ca-certificates/hubwizard-host-bundle.crt
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN rm -f /etc/apt/apt.conf.d/docker-clean && apt-get update -q \\
 && {APT_INSTALL} --no-install-recommends ca-certificates python3 \\
 && cp /usr/local/share/ca-certificates/hubwizard-host-bundle.crt /etc/ssl/certs/ca-certificates.crt
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt LANG=C.UTF-8
"""


@dataclass(frozen=True)
class Recipe:
    """One cached image: its kind, the Dockerfile on top of ``parent`` and extra context files."""

    kind: str
    parent: str | None  # kind of the parent image; None for the debootstrap base
    dockerfile: str = ""
    files: tuple[tuple[str, str], ...] = ()


RECIPES: dict[str, Recipe] = {
    "base": Recipe("base", None),
    "machine": Recipe("machine", "base", MACHINE_DOCKERFILE, (("hubwizard-lab-setup.service", SETUP_UNIT),)),
    "machine-docker": Recipe("machine-docker", "machine", MACHINE_DOCKER_DOCKERFILE),
    "support": Recipe("support", "base", SUPPORT_DOCKERFILE),
    "jupyterhub": Recipe("jupyterhub", "base", JUPYTERHUB_DOCKERFILE),
    "singleuser": Recipe("singleuser", "base", SINGLEUSER_DOCKERFILE),
    "oidc": Recipe("oidc", "base", OIDC_DOCKERFILE, (("oidc-lab.py", lab_oidc.SERVER),)),
}

DEBOOTSTRAP_ARGS = (
    "--variant=minbase",
    "--include=ca-certificates,python3,apt-utils,debconf-utils",
    "bookworm",
)


def repo() -> str:
    """Repository of the lab's images; $HUBWIZARD_LAB_REPO isolates a cold-cache benchmark."""
    return os.environ.get("HUBWIZARD_LAB_REPO", "hubwizard-lab")


def home() -> Path:
    """Where hubwizard keeps caches and lab state: $HUBWIZARD_HOME or ~/.cache/hubwizard."""
    env = os.environ.get("HUBWIZARD_HOME")
    return Path(env) if env else Path.home() / ".cache" / "hubwizard"


def _ca_digest() -> str:
    return hashlib.sha256(HOST_CA_BUNDLE.read_bytes()).hexdigest() if HOST_CA_BUNDLE.exists() else "none"


def base_hash() -> str:
    """Content hash of the debootstrap recipe, including the host CA bundle baked into it."""
    mirror = lab_mirror.resolve()
    text = "\n".join([*DEBOOTSTRAP_ARGS, mirror.debian, mirror.sources_list(), _ca_digest(), "v1"])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def image_tag(kind: str, base_image: str | None = None) -> str:
    """The tag of an image kind: a hash chaining its recipe to its parent's tag."""
    recipe = RECIPES[kind]
    if recipe.parent is None:
        text = f"{base_image}\n{BASE_WRAP_DOCKERFILE}\n{_ca_digest()}" if base_image else ""
        return f"{repo()}/base:{hashlib.sha256(text.encode()).hexdigest()[:12] if base_image else base_hash()}"
    parent = image_tag(recipe.parent, base_image)
    pip = lab_mirror.dockerfile_env(lab_mirror.pip_env()) if "pip install" in recipe.dockerfile else ""
    text = "\n".join([parent, recipe.dockerfile, *(f"{n}\n{c}" for n, c in recipe.files)]) + pip  # "" here: tags kept
    return f"{repo()}/{kind}:{hashlib.sha256(text.encode()).hexdigest()[:12]}"


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    """Serialise builds across processes: concurrent labs must not build the same image twice."""
    home().mkdir(parents=True, exist_ok=True)
    with open(home() / "build.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _have(client: Any, tag: str) -> bool:
    import docker.errors

    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def ensure(client: Any, kinds: list[str], progress: Progress, base_image: str | None = None) -> dict[str, str]:
    """Make sure every image kind in ``kinds`` (and its parents) exists; return kind -> tag."""
    tags: dict[str, str] = {}
    with build_lock():
        for kind in kinds:
            _ensure_one(client, kind, progress, base_image, tags)
    return tags


def _ensure_one(client: Any, kind: str, progress: Progress, base_image: str | None, tags: dict[str, str]) -> str:
    if kind in tags:
        return tags[kind]
    recipe = RECIPES[kind]
    tag = image_tag(kind, base_image)
    if recipe.parent is not None:
        _ensure_one(client, recipe.parent, progress, base_image, tags)
    if not _have(client, tag):
        if recipe.parent is None and base_image:
            _build_from_pulled(client, base_image, tag, progress)
        elif recipe.parent is None:
            _build_base(client, tag, progress)
        else:
            _build_dockerfile(client, recipe, tag, tags[recipe.parent], progress)
        _drop_stale(client, tag)
    tags[kind] = tag
    return tag


def _drop_stale(client: Any, current: str) -> None:
    """Untag older builds of the same kind (a changed recipe) unless containers still use them."""
    import docker.errors

    name = current.rpartition(":")[0]
    for image in client.images.list(name=name):
        for tag in image.tags:
            if tag != current:
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag)


def rootfs_tarball() -> Path:
    """The cached debootstrap rootfs (kept between runs so a lost image re-imports in seconds)."""
    return home() / f"rootfs-bookworm-{base_hash()}.tar"


def _build_base(client: Any, tag: str, progress: Progress) -> None:
    tarball = rootfs_tarball()
    if not tarball.exists():
        _debootstrap(tarball, progress)
    progress(f"importing {tarball.name} as {tag}…")
    repo, _, version = tag.rpartition(":")
    client.api.import_image_from_file(
        str(tarball),
        repository=repo,
        tag=version,
        changes=[
            "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
            "ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt",
            "ENV LANG=C.UTF-8",
            'CMD ["/bin/bash"]',
        ],
    )
    if not _have(client, tag):
        raise RuntimeError(f"docker import did not produce {tag}")


def _debootstrap(tarball: Path, progress: Progress) -> None:
    """debootstrap a minimal bookworm, add sources and the host CA bundle, tar it into the cache."""
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed; install it: apt-get install -y debootstrap")
    progress("building the Debian bookworm rootfs with debootstrap (once, about a minute)…")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=tarball.parent) as tmp:
        root = Path(tmp) / "root"
        log = tarball.parent / "debootstrap.log"
        with open(log, "w") as fh:
            done = subprocess.run(["debootstrap", *DEBOOTSTRAP_ARGS, str(root), lab_mirror.resolve().debian], stdout=fh,
                                  stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise RuntimeError(f"debootstrap failed (exit {done.returncode}); see {log}")
        _customise_rootfs(root)
        part = tarball.with_suffix(".tar.part")
        subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(part), "."], check=True)
        part.rename(tarball)


def _customise_rootfs(root: Path) -> None:
    """What every lab image needs on top of debootstrap: sources, CA bundle, no stray caches."""
    (root / "etc/apt/sources.list").write_text(lab_mirror.resolve().sources_list())
    if HOST_CA_BUNDLE.exists():
        local = root / "usr/local/share/ca-certificates"
        local.mkdir(parents=True, exist_ok=True)
        # Kept as a local CA so a later update-ca-certificates keeps the proxy's CA.
        shutil.copyfile(HOST_CA_BUNDLE, local / "hubwizard-host-bundle.crt")
        shutil.copyfile(HOST_CA_BUNDLE, root / "etc/ssl/certs/ca-certificates.crt")
    (root / "etc/hostname").write_text("localhost\n")
    for path in (root / "var/cache/apt/archives").glob("*.deb"):
        path.unlink()


def text_tar(files: dict[str, tuple[str, int]]) -> io.BytesIO:
    """A tar of {path: (text, mode)}: a build context, or files for put_archive at /."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, (text, mode) in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(data)
            info.mode = mode
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def _context(recipe: Recipe, parent_tag: str) -> io.BytesIO:
    """An in-memory build context: the Dockerfile and the recipe's files."""
    dockerfile = recipe.dockerfile.replace("{parent}", parent_tag)
    if "pip install" in dockerfile:  # pip inside the image uses this machine's index settings, if any
        head, _, rest = dockerfile.partition("\n")
        dockerfile = f"{head}\n{lab_mirror.dockerfile_env(lab_mirror.pip_env())}{rest}"
    files = {"Dockerfile": dockerfile, **dict(recipe.files)}
    return text_tar({name: (text, 0o644) for name, text in files.items()})


def _build_dockerfile(client: Any, recipe: Recipe, tag: str, parent_tag: str, progress: Progress) -> None:
    """docker build one recipe; keep the build log in the cache dir for when it fails."""
    progress(f"building image {tag}…")
    log = home() / f"build-{recipe.kind}.log"
    error = ""
    with open(log, "w") as fh:
        stream = client.api.build(
            fileobj=_context(recipe, parent_tag),
            custom_context=True,
            tag=tag,
            rm=True,
            forcerm=True,
            decode=True,
            labels={IMAGE_LABEL: recipe.kind},
            # host network: builds only need the mirror and PyPI, and do not depend on the
            # default bridge (docker0), which other tools on a shared engine may break.
            network_mode="host",
        )
        for chunk in stream:
            if "stream" in chunk:
                fh.write(chunk["stream"])
            if "error" in chunk:
                error = chunk["error"]
                fh.write(f"ERROR: {error}\n")
    if error or not _have(client, tag):
        raise RuntimeError(f"building {tag} failed: {error.strip()[-300:]} (log: {log})")


def _build_from_pulled(client: Any, base_image: str, tag: str, progress: Progress) -> None:
    """--base-image: pull a real Debian image and add what the debootstrap base has (CA bundle)."""
    progress(f"pulling base image {base_image}…")
    client.images.pull(base_image)
    ca = HOST_CA_BUNDLE.read_text() if HOST_CA_BUNDLE.exists() else ""
    recipe = Recipe("base", None, BASE_WRAP_DOCKERFILE, (("ca-certificates.crt", ca),))
    _build_dockerfile(client, recipe, tag, base_image, progress)


def remove_cached(client: Any, *, rootfs: bool = False) -> list[str]:
    """Remove every cached lab image (and the rootfs tarball with ``rootfs``): a cold cache."""
    import docker.errors

    removed = []
    for image in client.images.list(filters={"reference": f"{repo()}/*"}):
        for tag in image.tags:
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(tag, force=True)
                removed.append(tag)
    if rootfs:
        for path in home().glob("rootfs-bookworm-*.tar"):
            path.unlink()
            removed.append(str(path))
    return removed
