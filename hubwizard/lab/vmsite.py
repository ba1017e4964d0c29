"""The site file of a VM lab: the container lab's host entries, with kernel NFS and quotas on.

Why its own renderer: a VM lab has a real kernel (kernel nfsd, XFS project quotas on the hub's
data disk) and no ACME server, so HTTPS is off; its registry is a container on this machine
(vmregistry) holding the container lab's stand-in images, named as a site names any plain-HTTP
registry; hosts are written by the container lab's own writer (site._host).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hubwizard.lab.site import _q, registry_and_images, site_and_hosts

QUOTA_DEFAULT = "100M"  # small: the hub's data disk is 4G, and a test fills a user's quota


def render_vm_site(record: dict[str, Any]) -> str:
    out = site_and_hosts(record, f"hubwizard lab up --vm --name {record['name']}", "qemu VMs with Debian's kernel",
                         "sudo passwords")
    registry = record["registry"]["url"]
    out += [
        "[ssh]",
        f"known_hosts = {_q(record['known_hosts'])}  # host keys made by `lab up --vm`, given to each VM",
        "",
        "[docker]",
        f"insecure_registries = [{_q(registry)}]",
        "",
        *registry_and_images(registry, "  # a registry container on the lab machine, on the bridge's host address"),
        "[storage]",
        'kind = "nfs"',
        f"path = {_q(record['storage_path'])}  # an XFS disk of the hub, mounted with pquota",
        'implementation = "kernel"  # a real kernel: kernel nfsd',
        "",
        "[quotas]",
        "enabled = true",
        f"default = {_q(QUOTA_DEFAULT)}",
        "",
        "[https]",
        "enabled = false  # no ACME server in a VM lab",
        "",
        "[oauth]",
        'provider = "dummy"  # anyone logs in as anyone: right for a lab on a private network only',
        "i_understand_anyone_can_log_in = true",
        "",
    ]
    return "\n".join(out)


def write_vm_site(path: Path, record: dict[str, Any]) -> None:
    record = {**record, "site_path": str(path.resolve())}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_vm_site(record))
