"""The lab: a local rehearsal cluster of real machines, and the site file that points at it.

Why: admins rehearse an install before touching servers, and every recipe of this project is
tested for real. ``up`` builds (or reuses) the images, boots hub, nodes and spares plus a
registry and an ACME CA on a lab network of its own, records host keys read from inside each
machine, and writes a site file plus a 0600 secrets file that ``plan``/``apply`` use as they are.
Everything the lab creates carries the label ``io.hubwizard.lab=NAME``; ``down`` removes exactly
that, so labs with different names run side by side and never touch anything else.
Every Docker call is bounded in time and the engine's fragile calls are serialised across
processes (dockerguard): a deadlocked engine makes `lab up|down|status` fail with a plain
message, never hang.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hubwizard.core.secrets import write_secrets
from hubwizard.lab import images as lab_images
from hubwizard.lab import machines as lab_machines
from hubwizard.lab.create import create, registry_seed
from hubwizard.lab.dockerguard import EngineSilentError, answering, docker_lock, hold, slow_client
from hubwizard.lab.machines import LABEL, ROLE_LABEL
from hubwizard.lab.site import write_site
from hubwizard.lab.spec import (
    STAND_INS,
    LabError,
    LabSpec,
    NoEngineError,
    Progress,
    load_record,
    save_record,
    state_dir,
    validate_name,
)

__all__ = [
    "EngineSilentError",
    "LabError",
    "LabSpec",
    "NoEngineError",
    "down",
    "state_dir",
    "status",
    "up",
    "validate_name",
]


def connect() -> Any:
    """A docker client whose calls time out, or NoEngineError/EngineSilentError saying what to do."""
    from hubwizard.lab import dockerguard

    return dockerguard.connect()


def _objects(client: Any, name: str) -> dict[str, list[Any]]:
    flt = {"label": f"{LABEL}={name}"}
    with answering(client, "container ls / volume ls / network ls"):
        return {
            "containers": client.containers.list(all=True, filters=flt),
            "volumes": client.volumes.list(filters=flt),
            "networks": client.networks.list(filters=flt),
        }


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
    with hold(locks / f".{name}.lock", f"work on lab {name}", fix="wait for it, or stop it and run `lab down` again"):
        yield


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
    slow = slow_client(client)
    tags = _images(slow, kinds, spec, progress)
    try:
        with answering(client, f"lab up --name {spec.name}"):
            record = create(client, spec, tags, site_path, progress, seed, slow)
    except EngineSilentError:
        progress(f"lab up failed: the Docker engine hangs; lab {spec.name!r} is left for `lab down` after a restart")
        raise
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
        with answering(client, "image build"):
            return lab_images.ensure(client, kinds, progress, spec.base_image)
    except (RuntimeError, docker.errors.APIError) as exc:
        fix = ("check the network to the Debian mirror and the Python package index this machine uses (its apt sources "
               "and pip configuration; `lab up --mirror URL` names another mirror), then run `lab up` again (builds "
               "resume from the cache)")
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


def down(name: str, progress: Progress = print, client: Any = None) -> dict[str, int]:
    """Remove exactly what carries io.hubwizard.lab=NAME (containers, volumes, network).

    Never hangs: each Docker call has a timeout, and a deadlocked engine is reported as such.
    A VM lab (`lab up --vm`) is removed by its own module: recorded qemu PIDs, taps, bridge.
    """
    from hubwizard.lab import vm as lab_vm

    if lab_vm.present(name):
        return lab_vm.down(name, progress)
    client = client or connect()
    with name_lock(name):
        return _down_locked(client, name, progress)


def _down_locked(client: Any, name: str, progress: Progress) -> dict[str, int]:
    found = _objects(client, name)
    counts = {kind: len(objs) for kind, objs in found.items()}
    if found["containers"]:
        progress(f"removing {len(found['containers'])} containers of lab {name!r}…")
    if found["containers"] or found["networks"]:
        # Endpoint and network removal is where Docker 20.10 deadlocks when processes race.
        with docker_lock(f"remove lab {name}"):
            _remove_containers(client, found["containers"])
            _remove_networks(client, found["networks"])
    for volume in _objects(client, name)["volumes"]:
        with answering(client, f"volume rm {volume.name}"), _gone_is_fine():
            volume.remove(force=True)
    shutil.rmtree(state_dir(name), ignore_errors=True)
    progress(f"lab {name!r} is down" if any(counts.values()) else f"lab {name!r} was not up; nothing to remove")
    return counts


def _gone_is_fine() -> contextlib.AbstractContextManager[Any]:
    import docker.errors

    return contextlib.suppress(docker.errors.NotFound)


def _remove_containers(client: Any, containers: list[Any]) -> None:
    """Containers in parallel (each call bounded), before their network."""

    def remove(obj: Any) -> None:
        with answering(client, f"container rm -f {obj.name}"), _gone_is_fine():
            obj.remove(force=True, v=True)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(remove, containers))


def _remove_networks(client: Any, networks: list[Any]) -> None:
    for net in networks:
        with answering(client, f"network rm {net.name}"), _gone_is_fine():
            net.remove()


def status(name: str) -> dict[str, Any]:
    """Machines of a lab with their role, IP, container state, sshd and dockerd health."""
    from hubwizard.lab import vm as lab_vm

    if lab_vm.present(name):
        return lab_vm.status(name)
    client = connect()
    record = load_record(name) or {}
    port = int(record.get("spec", {}).get("ssh_port", 22))
    with answering(client, f"lab status --name {name}"):
        rows = _status_rows(client, name, port)
    healthy = bool(rows) and all(r["state"] == "running" and r.get("sshd", "yes") == "yes" for r in rows)
    return {
        "name": name,
        "up": bool(rows),
        "healthy": healthy,
        "site": record.get("site_path"),
        "registry": record.get("registry"),  # url on the lab network, host_port on 127.0.0.1
        "machines": rows,
    }


def _status_rows(client: Any, name: str, port: int) -> list[dict[str, str]]:
    rows = []
    for c in sorted(_objects(client, name)["containers"], key=lambda c: c.name):
        nets = c.attrs["NetworkSettings"]["Networks"]
        ip = next(iter(nets.values()))["IPAddress"] if nets else ""
        role = c.labels.get(ROLE_LABEL, "?")
        row = {"name": c.labels.get(lab_machines.HOST_LABEL, c.name), "container": c.name, "role": role, "ip": ip}
        row["state"] = c.status
        if role in ("hub", "node", "spare", "nfs"):
            running = c.status == "running"
            row["sshd"] = "yes" if running and ip and lab_machines.ssh_banner(ip, port) else "no"
            row["dockerd"] = lab_machines.dockerd_answers(c) if running else "no"
        rows.append(row)
    return rows
