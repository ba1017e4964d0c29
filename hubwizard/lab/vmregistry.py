"""The VM lab's image registry: a container on this machine's Docker engine, reached by the VMs
through the address this machine has on the lab's bridge.

Why: the VMs have no internet, and building JupyterHub or the user image inside a TCG guest
takes far too long. The container lab's stand-in images are built once on this machine (and
cached as a snapshot of a registry holding them, `create.registry_seed`); a registry container
started from that snapshot has its port published on the bridge's host address (for the VMs)
and on 127.0.0.1 (for this machine). The site then names it as any site names its registry
([registry] url, insecure, [images]): the hub pulls the base, builds and pushes its own image
there and the nodes pull from it, the product's own path. Nothing is built inside a VM but the
hub image's thin layers (pip finds everything installed, then the config load check).
"""

from __future__ import annotations

import secrets
from typing import Any

from hubwizard.lab import images as lab_images
from hubwizard.lab import services as lab_services
from hubwizard.lab.create import _push_stand_ins, registry_seed
from hubwizard.lab.dockerguard import answering, connect, docker_lock, slow_client
from hubwizard.lab.machines import LABEL, lab_labels
from hubwizard.lab.spec import STAND_INS, LabError, NoEngineError, Progress, network_name


def start(lab: str, host_ip: str, progress: Progress) -> tuple[dict[str, Any], str]:
    """Start lab LAB's registry; return its record entry and its password (for the secrets file)."""
    client = connect()
    slow = slow_client(client)
    seed = registry_seed(None)
    kinds = ["support"] + ([] if seed.exists() else [kind for kind, _, _ in STAND_INS])
    with answering(client, "lab images for the VM lab's registry"):
        tags = lab_images.ensure(slow, kinds, progress)
    password = secrets.token_urlsafe(18)
    progress(f"starting the VM lab's registry on {host_ip} (stand-in images {'from the cache' if seed.exists() else 'pushed'})…")
    with docker_lock(f"create network {network_name(lab)}"):
        net = client.networks.create(network_name(lab), driver="bridge", labels=lab_labels(lab))
    box = lab_services.start_registry(client, lab, tags["support"], net.name, password,
                                      seed if seed.exists() else None, bind=host_ip)
    local, remote = port_on(box, "127.0.0.1"), port_on(box, host_ip)
    lab_services.wait_registry(local)
    if not seed.exists():
        _push_stand_ins(slow, tags, local, password, progress)
        with lab_images.build_lock():
            if not seed.exists():
                lab_services.save_registry(box, seed)
    entry = {"url": f"{host_ip}:{remote}", "host_port": local, "container": box.name, "network": net.name}
    return entry, password


def port_on(container: Any, address: str, port: str = "5000/tcp") -> int:
    """The host port docker published PORT on at ADDRESS (one container, two bindings)."""
    import time

    for _ in range(50):
        container.reload()
        for binding in container.attrs["NetworkSettings"]["Ports"].get(port) or []:
            if binding.get("HostIp") == address:
                return int(binding["HostPort"])
        time.sleep(0.1)
    raise LabError(f"{container.name}: port {port} was not published on {address}",
                   fix="check `docker port " + container.name + "`; then `lab down` and `lab up --vm` again")


def remove(lab: str) -> int:
    """Remove what carries io.hubwizard.lab=LAB on this machine's engine (the registry and its
    network); a machine without a Docker engine has nothing of the lab to remove."""
    import docker.errors

    try:
        client = connect()
    except NoEngineError:
        return 0
    flt = {"label": f"{LABEL}={lab}"}
    gone = 0
    with docker_lock(f"remove lab {lab}"):
        for container in client.containers.list(all=True, filters=flt):
            try:
                container.remove(force=True, v=True)
                gone += 1
            except docker.errors.NotFound:
                pass
        for net in client.networks.list(filters=flt):
            try:
                net.remove()
                gone += 1
            except docker.errors.NotFound:
                pass
    return gone
