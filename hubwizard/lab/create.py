"""`lab up`'s creation of a lab: network, registry, machines, ACME, the OpenID provider, then
waiting for all of it.

Why in this order: the registry's address goes into the machines' daemon.json, the hub's into
the nodes' sshd (with --jump) and into pebble's DNS, and pebble's certificate must name its own
address, which only exists once its container runs. Waiting (systemd, sshd, dockerd) overlaps
with putting the stand-in images into the registry.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hubwizard.core.secrets import write_secrets
from hubwizard.lab import images as lab_images
from hubwizard.lab import machines as lab_machines
from hubwizard.lab import oidc as lab_oidc
from hubwizard.lab import services as lab_services
from hubwizard.lab.dockerguard import docker_lock
from hubwizard.lab.machines import SHAPE_LABEL, MachineSpec, container_name
from hubwizard.lab.site import DOMAIN, write_site
from hubwizard.lab.spec import STAND_INS, LabSpec, Progress, network_name, save_record, state_dir


def registry_seed(base_image: str | None) -> Path:
    """Where a snapshot of a registry holding exactly the current stand-in images is cached."""
    key = "\n".join(lab_images.image_tag(kind, base_image) + f"={repo}:{tag}" for kind, repo, tag in STAND_INS)
    return lab_images.home() / f"registry-{hashlib.sha256(key.encode()).hexdigest()[:12]}.tar"


def create(
    client: Any, spec: LabSpec, tags: dict[str, str], site_path: Path, progress: Progress, seed: Path, slow: Any = None
) -> dict:
    """Create the lab's objects in dependency order and write its files; the caller cleans up on failure.

    ``slow``: a client with a long timeout for pushes (``client``'s calls time out sooner).
    """
    build = _Creation(client, spec, tags, progress, seed)
    build.slow = slow or client
    build.network()
    build.registry()
    build.machines()
    build.acme()
    build.oidc()
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
        self.slow: Any = client  # pushes stream with long silences: create() may give a patient client
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
        if not spec.dummy_login:
            self.secret["oauth_client_secret"] = secrets.token_urlsafe(24)
        self.oidc_ip: str | None = None
        self.containers: dict[str, Any] = {}
        self.ips: dict[str, str] = {}
        self.keys: dict[str, list[str]] = {}

    def network(self) -> None:
        """A bridge of its own; docker picks a free subnet so concurrent labs never clash."""
        self.progress(f"creating network {network_name(self.spec.name)}…")
        with docker_lock(f"create network {network_name(self.spec.name)}"):
            self.net = self.client.networks.create(
                network_name(self.spec.name), driver="bridge", labels=lab_machines.lab_labels(self.spec.name)
            )
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

    def oidc(self) -> None:
        """The login provider: its image is built here (cached), its client is the hub."""
        if self.spec.dummy_login:
            return
        self.progress("starting oidc (oidc-provider-mock)…")
        tag = lab_images.ensure(self.slow, ["oidc"], self.progress, self.spec.base_image)["oidc"]
        callback = f"https://{DOMAIN}/hub/oauth_callback"
        box = lab_services.start_oidc(
            self.client, self.spec.name, tag, self.net.name, self.secret["oauth_client_secret"], callback,
            self.spec.students,
        )
        self.oidc_ip = lab_machines.ip_of(box, self.net.name)

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
        if self.oidc_ip:
            lab_services.wait_oidc(self.oidc_ip)
        known = [line for h in hosts for line in lab_machines.known_hosts_lines(self.ips[h], spec.ssh_port, self.keys[h])]
        (self.state / "known_hosts").write_text("\n".join(known) + "\n")

    def _stand_ins(self) -> None:
        """Stand-in images into the registry: from the seed, or pushed once and then cached."""
        lab_services.wait_registry(self.registry_port)
        if self.seeded:
            return
        password = self.secret["registry_password"]
        _push_stand_ins(self.slow, self.tags, self.registry_port, password, self.progress)
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
            "oidc": ({"ip": self.oidc_ip, "client_id": lab_oidc.CLIENT_ID, "students": self.spec.students}
                     if self.oidc_ip else None),
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
