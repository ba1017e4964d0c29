"""The site file of a VM lab: the container lab's host entries, with kernel NFS and quotas on.

Why its own renderer: a VM lab has a real kernel (kernel nfsd, XFS project quotas on the
storage host's data disk: the hub's, or with `--nfs-host` the VM "nfs", named storage.server)
and no ACME server, so HTTPS is off; its registry is a container on this machine (vmregistry)
holding the container lab's stand-in images, named as a site names any plain-HTTP registry;
hosts are written by the container lab's own writer (site._host).

The classic (2016) track (`lab up --vm --track classic`): the hub's /home exported by kernel
nfsd and mounted by autofs on the nodes, for real; only Consul and the standalone Swarm
manager stay lab stand-ins ([classic] lab_stand_ins: their images are on Docker Hub, which a
lab cannot reach), and classic-verify says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hubwizard.lab.site import _q, registry_and_images, site_and_hosts

QUOTA_DEFAULT = "100M"  # small: the storage host's data disk is 4G, and a test fills a user's quota
TRACKS = ("swarm-mode", "classic")
CLASSIC_USERS = ("student1", "student2")  # the tutorial's accounts: same uid on every VM (classic-uids)


def render_vm_site(record: dict[str, Any]) -> str:
    track = record.get("track", "swarm-mode")
    flag = ("" if track == "swarm-mode" else f" --track {track}") + (" --nfs-host" if record["spec"].get("nfs_host") else "")
    out = site_and_hosts(record, f"hubwizard lab up --vm{flag} --name {record['name']}",
                         "qemu VMs with Debian's kernel", "sudo passwords", track=track)
    registry = record["registry"]["url"]
    out += [
        "[ssh]",
        f"known_hosts = {_q(record['known_hosts'])}  # host keys made by `lab up --vm`, given to each VM",
        "",
        "[docker]",
        f"insecure_registries = [{_q(registry)}]",
        "",
        *registry_and_images(registry, "  # a registry container on the lab machine, on the bridge's host address"),
    ]
    out += _classic() if track == "classic" else _swarm_mode_storage(record)
    out += [
        "[https]",
        "enabled = false  # no ACME server in a VM lab",
        "",
        "[oauth]",
        'provider = "dummy"  # anyone logs in as anyone: right for a lab on a private network only',
        "i_understand_anyone_can_log_in = true",
        "",
    ]
    return "\n".join(out)


def _classic() -> list[str]:
    """Homes in the hub's /home, exported by kernel nfsd, automounted on the nodes: all real."""
    users = ", ".join(_q(u) for u in CLASSIC_USERS)
    return [
        "[hub]",
        f"allowed_users = [{users}]  # create each with one uid on every VM (`useradd -u`): classic-uids checks",
        "",
        "[storage]",
        'kind = "autofs"  # the hub exports /home (kernel nfsd); autofs mounts /home/USER on the nodes',
        'implementation = "kernel"',
        "",
        "[classic]",
        "lab_stand_ins = true  # lab only: Consul and `swarm manage` images are on Docker Hub; NFS and autofs are real",
        "",
    ]


def _swarm_mode_storage(record: dict[str, Any]) -> list[str]:
    dedicated = bool(record["spec"].get("nfs_host"))
    host = "the NFS host" if dedicated else "the hub"
    return [
        "[storage]",
        'kind = "nfs"',
        *(['server = "nfs"  # a dedicated NFS host (lab up --vm --nfs-host), not the hub'] if dedicated else []),
        f"path = {_q(record['storage_path'])}  # an XFS disk of {host}, mounted with pquota",
        'implementation = "kernel"  # a real kernel: kernel nfsd',
        "",
        "[quotas]",
        "enabled = true",
        f"default = {_q(QUOTA_DEFAULT)}",
        "",
    ]


def write_vm_site(path: Path, record: dict[str, Any]) -> None:
    record = {**record, "site_path": str(path.resolve())}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_vm_site(record))
