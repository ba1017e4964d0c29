"""The lab: a local rehearsal cluster of real machines, and the site file that points at it.

Why: admins rehearse an install before touching servers, and every recipe of this project is
tested for real. ``up`` builds (or reuses) the images, boots hub, nodes and spares plus a
registry and an ACME CA on a lab network of its own, records host keys read from inside each
machine, and writes a site file plus a 0600 secrets file that ``plan``/``apply`` use as they are.
Everything the lab creates carries the label ``io.hubwizard.lab=NAME``; ``down`` removes exactly
that, so labs with different names run side by side and never touch anything else.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hubwizard import lab_images, lab_machines, lab_services
from hubwizard.errors import ConfigError, HubwizardError
from hubwizard.lab_machines import LABEL, ROLE_LABEL, SHAPE_LABEL, MachineSpec, container_name
from hubwizard.lab_site import write_secrets, write_site

Progress = Callable[[str], None]
STAND_INS = (("jupyterhub", "lab/jupyterhub", "5"), ("singleuser", "lab/singleuser", "latest"))


class LabError(HubwizardError):
    """The lab could not be brought up, inspected or removed."""

    title = "lab failed"


class NoEngineError(LabError):
    """No Docker engine answers: the lab cannot run at all."""


@dataclass(frozen=True)
class LabSpec:
    """The shape of a lab: what `lab up` was asked for (compared when a lab is already up)."""

    name: str = "lab"
    nodes: int = 2
    spares: int = 0
    user: str = "root"
    sudo_password: bool = False
    ssh_port: int = 22
    jump: bool = False
    with_docker: bool = False
    base_image: str | None = None

    def shape(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def hosts(self) -> list[tuple[str, str]]:
        """(host name, role) of every machine, hub first."""
        return (
            [("hub", "hub")]
            + [(f"node{i}", "node") for i in range(1, self.nodes + 1)]
            + [(f"spare{i}", "spare") for i in range(1, self.spares + 1)]
        )


def state_dir(name: str) -> Path:
    """Keys, known_hosts, pebble certs and the record of one lab."""
    return lab_images.home() / "lab" / name


def connect() -> Any:
    """A docker client for the host's engine, or a NoEngineError saying how to get one."""
    import docker

    try:
        client = docker.from_env(timeout=300)
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        raise NoEngineError(
            f"no Docker engine answers ({exc})",
            fix="start one with `scripts/dockerd.sh start` (install it first with `apt-get install -y docker.io`), "
            "or set DOCKER_HOST to an engine that answers",
        ) from None


def _objects(client: Any, name: str) -> dict[str, list[Any]]:
    flt = {"label": f"{LABEL}={name}"}
    return {
        "containers": client.containers.list(all=True, filters=flt),
        "volumes": client.volumes.list(filters=flt),
        "networks": client.networks.list(filters=flt),
    }


def network_name(name: str) -> str:
    return f"hwlab-{name}"


INOTIFY = {"max_user_instances": 8192, "max_user_watches": 1048576}


def raise_inotify_limits(progress: Progress) -> None:
    """systemd in every machine takes several inotify instances from the host's one root budget;
    Debian's default (128) stops booting machines at about the twentieth ("Too many open files").
    """
    for key, wanted in INOTIFY.items():
        path = Path("/proc/sys/fs/inotify") / key
        try:
            current = int(path.read_text())
            if current < wanted:
                path.write_text(str(wanted))
                progress(f"raised fs.inotify.{key} from {current} to {wanted} (systemd in each lab machine needs some)")
        except (OSError, ValueError) as exc:
            raise LabError(
                f"fs.inotify.{key} is too low for many lab machines and could not be raised: {exc}",
                fix=f"run as root: sysctl -w fs.inotify.{key}={wanted}",
            ) from None


@contextlib.contextmanager
def name_lock(name: str) -> Iterator[None]:
    """One `lab up`/`lab down` per lab name at a time, across processes.

    Why: two concurrent `up --name X` would both find nothing, both create, and the loser's
    cleanup would remove the winner's machines. With the lock the second one reuses or refuses.
    """
    locks = lab_images.home() / "lab"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def up(spec: LabSpec, site_path: Path, progress: Progress = print) -> dict[str, Any]:
    """Bring the lab up (or reuse the one with the same name and shape); return its record."""
    client = connect()
    raise_inotify_limits(progress)
    with name_lock(spec.name):
        return _up_locked(client, spec, site_path, progress)


def _up_locked(client: Any, spec: LabSpec, site_path: Path, progress: Progress) -> dict[str, Any]:
    existing = _objects(client, spec.name)
    if any(existing.values()):
        return _reuse(client, spec, site_path, existing, progress)
    seed = registry_seed(spec.base_image)
    kinds = ["machine-docker" if spec.with_docker else "machine", "support"]
    if not seed.exists():
        kinds += [kind for kind, _, _ in STAND_INS]
    tags = _images(client, kinds, spec, progress)
    try:
        record = _create(client, spec, tags, site_path, progress, seed)
    except BaseException:
        progress(f"lab up failed: removing what it made for lab {spec.name!r}…")
        _down_locked(client, spec.name, lambda _m: None)
        raise
    progress(f"ready: lab {spec.name!r}")
    return record


def _images(client: Any, kinds: list[str], spec: LabSpec, progress: Progress) -> dict[str, str]:
    """Build or find the images; failures become one message with the log to read."""
    import docker.errors

    try:
        return lab_images.ensure(client, kinds, progress, spec.base_image)
    except (RuntimeError, docker.errors.APIError) as exc:
        fix = "check the network to deb.debian.org and PyPI, then run `lab up` again (builds resume from the cache)"
        if spec.base_image:
            fix = f"check that {spec.base_image} can be pulled, or omit --base-image to build with debootstrap"
        raise LabError(f"could not build the lab's images: {exc}", fix=fix) from None


def _reuse(client: Any, spec: LabSpec, site_path: Path, existing: dict[str, list[Any]], progress: Progress) -> dict:
    """A lab with this name exists: reuse it if it is whole and of the same shape, else refuse."""
    record = load_record(spec.name)
    running = {c.labels.get(lab_machines.HOST_LABEL) for c in existing["containers"] if c.status == "running"}
    wanted = {h for h, _ in spec.hosts()} | {"registry", "acme"}
    if record is None or record.get("shape") != spec.shape() or not wanted <= running:
        raise LabError(
            f"a lab named {spec.name!r} already exists with another shape or is not fully running",
            fix=f"remove it first with `hubwizard lab down --name {spec.name}` (or pick another --name)",
        )
    progress(f"already up: lab {spec.name!r}")
    write_site(site_path, record)
    write_secrets(site_path, record["secrets"])
    record["site_path"] = str(site_path.resolve())
    save_record(record)
    return record


def registry_seed(base_image: str | None) -> Path:
    """Where a snapshot of a registry holding exactly the current stand-in images is cached."""
    key = "\n".join(lab_images.image_tag(kind, base_image) + f"={repo}:{tag}" for kind, repo, tag in STAND_INS)
    return lab_images.home() / f"registry-{hashlib.sha256(key.encode()).hexdigest()[:12]}.tar"


def _create(client: Any, spec: LabSpec, tags: dict[str, str], site_path: Path, progress: Progress, seed: Path) -> dict:
    """Create the lab's objects in dependency order and write its files; the caller cleans up on failure."""
    build = _Creation(client, spec, tags, progress, seed)
    build.network()
    build.registry()
    build.machines()
    build.acme()
    build.wait()
    record = build.record(site_path)
    save_record(record)
    write_site(site_path, record)
    write_secrets(site_path, record["secrets"])
    return record


class _Creation:
    """One `lab up` in progress: what has been made so far and what the next step needs."""

    def __init__(self, client: Any, spec: LabSpec, tags: dict[str, str], progress: Progress, seed: Path) -> None:
        self.client, self.spec, self.tags, self.progress = client, spec, tags, progress
        self.seed = seed
        self.seeded = seed.exists()
        self.state = state_dir(spec.name)
        shutil.rmtree(self.state, ignore_errors=True)
        self.state.mkdir(parents=True, mode=0o700)
        self.key_path = self.state / "id_ed25519"
        self.public_key = lab_services.ssh_keypair(self.key_path)
        self.secret = {"registry_password": secrets.token_urlsafe(18)}
        if spec.sudo_password:
            self.secret["sudo_password"] = secrets.token_urlsafe(12)
        self.containers: dict[str, Any] = {}
        self.ips: dict[str, str] = {}
        self.keys: dict[str, list[str]] = {}

    def network(self) -> None:
        """A bridge of its own; docker picks a free subnet so concurrent labs never clash."""
        self.progress(f"creating network {network_name(self.spec.name)}…")
        self.net = self.client.networks.create(network_name(self.spec.name), driver="bridge", labels={LABEL: self.spec.name})
        self.net.reload()
        self.subnet = self.net.attrs["IPAM"]["Config"][0]["Subnet"]

    def registry(self) -> None:
        if self.seeded:
            self.progress("starting registry (stand-in images from the cache)…")
        else:
            self.progress("starting registry…")
        self.registry_box = lab_services.start_registry(
            self.client,
            self.spec.name,
            self.tags["support"],
            self.net.name,
            self.secret["registry_password"],
            self.seed if self.seeded else None,
        )
        self.registry_ip = lab_machines.ip_of(self.registry_box, self.net.name)
        self.registry_url = f"{self.registry_ip}:5000"
        self.registry_port = lab_services.published_port(self.registry_box)

    def _machine(self, host: str, role: str, only_from: str | None) -> None:
        spec = self.spec
        machine = MachineSpec(
            host=host,
            role=role,
            user=spec.user,
            port=spec.ssh_port,
            public_key=self.public_key,
            sudo_password=self.secret.get("sudo_password"),
            allow_only_from=only_from,
            insecure_registry=self.registry_url if spec.with_docker else None,
        )
        image = self.tags["machine-docker" if spec.with_docker else "machine"]
        self.progress(f"starting {host}…")
        box = lab_machines.create(self.client, spec.name, machine, image, self.net.name, {SHAPE_LABEL: spec.shape()})
        self.containers[host] = box
        self.ips[host] = lab_machines.ip_of(box, self.net.name)

    def machines(self) -> None:
        """The hub first: with --jump the nodes' sshd must know the hub's address."""
        self._machine("hub", "hub", None)
        only_from = self.ips["hub"] if self.spec.jump else None
        rest = self.spec.hosts()[1:]
        if rest:
            with ThreadPoolExecutor(max_workers=min(len(rest), 4)) as pool:
                list(pool.map(lambda hr: self._machine(hr[0], hr[1], only_from), rest))

    def acme(self) -> None:
        """pebble needs a cert naming its own IP, which exists only once the container runs."""
        self.progress("starting acme (pebble)…")
        self.acme_box = lab_services.start_acme(self.client, self.spec.name, self.tags["support"], self.net.name, self.ips["hub"])
        self.acme_ip = lab_machines.ip_of(self.acme_box, self.net.name)
        cert, key = self.state / "pebble-cert.pem", self.state / "pebble-key.pem"
        lab_services.self_signed(self.acme_ip, cert, key)
        lab_services.give_acme_cert(self.acme_box, cert, key)

    def wait(self) -> None:
        """Machines boot while the stand-in images go into the registry: both in parallel."""
        spec, hosts = self.spec, list(self.containers)
        with ThreadPoolExecutor(max_workers=len(hosts) + 1) as pool:
            pushed = pool.submit(self._stand_ins)
            found = pool.map(lambda h: _ready(self.containers[h], self.ips[h], spec, self.progress), hosts)
            self.keys = dict(zip(hosts, found, strict=True))
            pushed.result()
        cert = self.state / "pebble-cert.pem"
        lab_services.fetch_pebble_root(self.acme_ip, cert, self.state / "pebble-root.pem")
        known = [line for h in hosts for line in lab_machines.known_hosts_lines(self.ips[h], spec.ssh_port, self.keys[h])]
        (self.state / "known_hosts").write_text("\n".join(known) + "\n")

    def _stand_ins(self) -> None:
        """Stand-in images into the registry: from the seed, or pushed once and then cached."""
        lab_services.wait_registry(self.registry_port)
        if self.seeded:
            return
        password = self.secret["registry_password"]
        _push_stand_ins(self.client, self.tags, self.registry_port, password, self.progress)
        with lab_images.build_lock():
            if not self.seed.exists():
                self.progress("caching the registry's stand-in images for the next labs…")
                lab_services.save_registry(self.registry_box, self.seed)

    def record(self, site_path: Path) -> dict[str, Any]:
        spec, state = self.spec, self.state
        return {
            "name": spec.name,
            "shape": spec.shape(),
            "spec": asdict(spec),
            "created": time.time(),
            "network": self.net.name,
            "subnet": self.subnet,
            "machines": {h: {"ip": self.ips[h], "role": r, "container": container_name(spec.name, h)} for h, r in spec.hosts()},
            "registry": {"ip": self.registry_ip, "host_port": self.registry_port, "url": self.registry_url},
            "acme": {"ip": self.acme_ip},
            "key": str(self.key_path),
            "known_hosts": str(state / "known_hosts"),
            "pebble_cert": str(state / "pebble-cert.pem"),
            "pebble_root": str(state / "pebble-root.pem"),
            "site_path": str(site_path.resolve()),
            "secrets": self.secret,
        }


def _ready(container: Any, address: str, spec: LabSpec, progress: Progress) -> list[str]:
    lab_machines.wait_ready(container, address, spec.ssh_port, spec.with_docker)
    progress(f"{container.name} ready ({address})")
    return lab_machines.host_keys(container)


def _push_stand_ins(client: Any, tags: dict[str, str], port: int, password: str, progress: Progress) -> None:
    for kind, repo, tag in STAND_INS:
        progress(f"pushing {repo}:{tag} into the lab registry…")
        lab_services.push(client, tags[kind], port, repo, tag, password)


def save_record(record: dict) -> None:
    """The lab's record (0600: it holds the secrets so a reused lab can rewrite its files)."""
    path = state_dir(record["name"]) / "lab.json"
    path.write_text("")
    path.chmod(0o600)
    path.write_text(json.dumps(record, indent=2) + "\n")


def load_record(name: str) -> dict | None:
    try:
        return json.loads((state_dir(name) / "lab.json").read_text())
    except (OSError, ValueError):
        return None


def down(name: str, progress: Progress = print, client: Any = None) -> dict[str, int]:
    """Remove exactly what carries io.hubwizard.lab=NAME (containers, volumes, network)."""
    client = client or connect()
    with name_lock(name):
        return _down_locked(client, name, progress)


def _down_locked(client: Any, name: str, progress: Progress) -> dict[str, int]:
    import docker.errors

    found = _objects(client, name)
    counts = {kind: len(objs) for kind, objs in found.items()}
    if found["containers"]:
        progress(f"removing {len(found['containers'])} containers of lab {name!r}…")

    def remove(obj: Any) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            obj.remove(force=True, v=True)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(remove, found["containers"]))
    for volume in _objects(client, name)["volumes"]:
        with contextlib.suppress(docker.errors.NotFound):
            volume.remove(force=True)
    for net in found["networks"]:
        with contextlib.suppress(docker.errors.NotFound):
            net.remove()
    shutil.rmtree(state_dir(name), ignore_errors=True)
    progress(f"lab {name!r} is down" if any(counts.values()) else f"lab {name!r} was not up; nothing to remove")
    return counts


def status(name: str) -> dict[str, Any]:
    """Machines of a lab with their role, IP, container state, sshd and dockerd health."""
    client = connect()
    record = load_record(name) or {}
    port = int(record.get("spec", {}).get("ssh_port", 22))
    rows = []
    for c in sorted(_objects(client, name)["containers"], key=lambda c: c.name):
        nets = c.attrs["NetworkSettings"]["Networks"]
        ip = next(iter(nets.values()))["IPAddress"] if nets else ""
        role = c.labels.get(ROLE_LABEL, "?")
        row = {"name": c.labels.get(lab_machines.HOST_LABEL, c.name), "container": c.name, "role": role, "ip": ip}
        row["state"] = c.status
        if role in ("hub", "node", "spare"):
            running = c.status == "running"
            row["sshd"] = "yes" if running and ip and lab_machines.ssh_banner(ip, port) else "no"
            row["dockerd"] = lab_machines.dockerd_answers(c) if running else "no"
        rows.append(row)
    healthy = bool(rows) and all(r["state"] == "running" and r.get("sshd", "yes") == "yes" for r in rows)
    return {"name": name, "up": bool(rows), "healthy": healthy, "site": record.get("site_path"), "machines": rows}


def validate_name(name: str) -> None:
    """Lab names end up in container, network and site names: same rule as site names."""
    import re

    if not re.fullmatch(r"[a-z][a-z0-9-]{0,23}", name):
        raise ConfigError(f"--name {name!r}: use lowercase letters, digits and '-', starting with a letter (max 24)")
