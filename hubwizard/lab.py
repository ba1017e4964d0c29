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
import json
import secrets
import shutil
import time
from collections.abc import Callable
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


def up(spec: LabSpec, site_path: Path, progress: Progress = print) -> dict[str, Any]:
    """Bring the lab up (or reuse the one with the same name and shape); return its record."""
    client = connect()
    existing = _objects(client, spec.name)
    if any(existing.values()):
        return _reuse(client, spec, site_path, existing, progress)
    kinds = ["machine-docker" if spec.with_docker else "machine", "support", "jupyterhub", "singleuser"]
    tags = lab_images.ensure(client, kinds, progress, spec.base_image)
    try:
        record = _create(client, spec, tags, site_path, progress)
    except BaseException:
        progress(f"lab up failed: removing what it made for lab {spec.name!r}…")
        down(spec.name, progress=lambda _m: None, client=client)
        raise
    progress(f"ready: lab {spec.name!r}")
    return record


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


def _create(client: Any, spec: LabSpec, tags: dict[str, str], site_path: Path, progress: Progress) -> dict:
    state = state_dir(spec.name)
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True, mode=0o700)
    key_path = state / "id_ed25519"
    public_key = lab_services.ssh_keypair(key_path)
    secret = {"registry_password": secrets.token_urlsafe(18)}
    if spec.sudo_password:
        secret["sudo_password"] = secrets.token_urlsafe(12)
    progress(f"creating network {network_name(spec.name)}…")
    net = client.networks.create(network_name(spec.name), driver="bridge", labels={LABEL: spec.name})
    net.reload()
    subnet = net.attrs["IPAM"]["Config"][0]["Subnet"]
    labels = {SHAPE_LABEL: spec.shape()}
    machine_image = tags["machine-docker" if spec.with_docker else "machine"]

    progress("starting registry…")
    registry = lab_services.start_registry(client, spec.name, tags["support"], net.name, secret["registry_password"])
    registry_ip = lab_machines.ip_of(registry, net.name)
    registry_url = f"{registry_ip}:5000"

    def machine(host: str, role: str, only_from: str | None) -> MachineSpec:
        return MachineSpec(
            host=host,
            role=role,
            user=spec.user,
            port=spec.ssh_port,
            public_key=public_key,
            sudo_password=secret.get("sudo_password"),
            allow_only_from=only_from,
            insecure_registry=registry_url if spec.with_docker else None,
        )

    progress("starting hub…")
    containers = {
        "hub": lab_machines.create(client, spec.name, machine("hub", "hub", None), machine_image, net.name, labels)
    }
    hub_ip = lab_machines.ip_of(containers["hub"], net.name)
    only_from = hub_ip if spec.jump else None
    for host, role in spec.hosts()[1:]:
        progress(f"starting {host}…")
        containers[host] = lab_machines.create(
            client, spec.name, machine(host, role, only_from), machine_image, net.name, labels
        )

    progress("starting acme (pebble)…")
    acme = lab_services.start_acme(client, spec.name, tags["support"], net.name, hub_ip)
    acme_ip = lab_machines.ip_of(acme, net.name)
    lab_services.self_signed(acme_ip, state / "pebble-cert.pem", state / "pebble-key.pem")
    lab_services.give_acme_cert(acme, state / "pebble-cert.pem", state / "pebble-key.pem")

    ips = {host: lab_machines.ip_of(c, net.name) for host, c in containers.items()}
    port = lab_services.published_port(registry)
    with ThreadPoolExecutor(max_workers=len(containers) + 1) as pool:
        pushed = pool.submit(_push_stand_ins, client, tags, port, secret["registry_password"], progress)
        keys = dict(
            zip(containers, pool.map(lambda h: _ready(containers[h], ips[h], spec, progress), containers), strict=True)
        )
        pushed.result()
    lab_services.fetch_pebble_root(acme_ip, state / "pebble-cert.pem", state / "pebble-root.pem")

    known = [
        line for host in containers for line in lab_machines.known_hosts_lines(ips[host], spec.ssh_port, keys[host])
    ]
    (state / "known_hosts").write_text("\n".join(known) + "\n")
    record = {
        "name": spec.name,
        "shape": spec.shape(),
        "spec": asdict(spec),
        "created": time.time(),
        "network": net.name,
        "subnet": subnet,
        "machines": {h: {"ip": ips[h], "role": r, "container": container_name(spec.name, h)} for h, r in spec.hosts()},
        "registry": {"ip": registry_ip, "host_port": port, "url": registry_url},
        "acme": {"ip": acme_ip},
        "key": str(key_path),
        "known_hosts": str(state / "known_hosts"),
        "pebble_cert": str(state / "pebble-cert.pem"),
        "pebble_root": str(state / "pebble-root.pem"),
        "site_path": str(site_path.resolve()),
        "secrets": secret,
    }
    save_record(record)
    write_site(site_path, record)
    write_secrets(site_path, secret)
    return record


def _ready(container: Any, address: str, spec: LabSpec, progress: Progress) -> list[str]:
    lab_machines.wait_ready(container, address, spec.ssh_port, spec.with_docker)
    progress(f"{container.name} ready ({address})")
    return lab_machines.host_keys(container)


def _push_stand_ins(client: Any, tags: dict[str, str], port: int, password: str, progress: Progress) -> None:
    lab_services.wait_registry(port)
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
    import docker.errors

    client = client or connect()
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
    return {"name": name, "up": bool(rows), "site": record.get("site_path"), "machines": rows}


def validate_name(name: str) -> None:
    """Lab names end up in container, network and site names: same rule as site names."""
    import re

    if not re.fullmatch(r"[a-z][a-z0-9-]{0,23}", name):
        raise ConfigError(f"--name {name!r}: use lowercase letters, digits and '-', starting with a letter (max 24)")
