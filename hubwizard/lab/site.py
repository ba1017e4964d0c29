"""The site file and secrets file a lab writes: what `plan`/`apply` read to reach the lab.

Why laid out line by line: the file is meant to be read by an admin learning the format, so it
keeps the section order and comments of examples/site.toml; every value is written by the TOML
library the site file writer uses (tomlkit), so its quoting and escaping are TOML's own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import tomlkit

from hubwizard.core.secrets import secrets_path
from hubwizard.lab import oidc as lab_oidc

DOMAIN = "hub.lab.test"
EMAIL = "admin@lab.test"


def _q(value: str) -> str:
    return tomlkit.item(value).as_string()


def _host(name: str, role: str, machine: dict[str, Any], spec: dict[str, Any], key: str) -> list[str]:
    lines = [
        "[[hosts]]",
        f"name = {_q(name)}",
        f"address = {_q(machine['ip'])}",
        f"role = {_q('node' if role == 'spare' else role)}",
        f"user = {_q(spec['user'])}",
        f"port = {int(spec['ssh_port'])}",
        f"key = {_q(key)}",
    ]
    if spec["jump"] and role != "hub":
        lines.append('jump = "hub"')
    if spec["sudo_password"]:
        lines.append('sudo = "password"')
    if role == "spare":
        lines.append("spare = true  # up, not yet part of the cluster: rehearse `hubwizard add-node`")
    return [*lines, ""]


def site_and_hosts(record: dict[str, Any], command: str, what: str, secrets: str,
                   track: str = "swarm-mode") -> list[str]:
    """The lines every lab site starts with: who wrote it, where its secrets are, [site], the hosts."""
    out = [
        f"# Written by `{command}`: {what}.",
        f"# Secrets ({secrets}): {secrets_path(Path(record['site_path'])).name}, beside this file.",
        "",
        "[site]",
        f"name = {_q(record['name'])}",
        f"track = {_q(track)}",
        f"domain = {_q(DOMAIN)}",
        f"email = {_q(EMAIL)}",
        f"subnet = {_q(record['subnet'])}",
        "",
    ]
    for host, machine in record["machines"].items():
        out += _host(host, machine["role"], machine, record["spec"], record["key"])
    return out


def render_site(record: dict[str, Any]) -> str:
    """The site file's text for a lab record."""
    registry = record["registry"]["url"]
    acme = record["acme"]["ip"]
    out = site_and_hosts(record, f"hubwizard lab up --name {record['name']}", "a local rehearsal cluster",
                         "registry, sudo passwords, OAuth client")
    out += [
        "[ssh]",
        f"known_hosts = {_q(record['known_hosts'])}  # host keys read from inside each machine",
        "",
        "[docker]",
        f"insecure_registries = [{_q(registry)}]",
        "",
        "[storage]",
        'kind = "nfs"',
        *(['server = "nfs"  # a dedicated NFS host (lab up --nfs-host), not the hub'] if record["spec"].get("nfs_host") else []),
        'implementation = "ganesha"  # no NFS in this kernel: userspace NFS',
        "grace_period = 10  # a fresh lab has no NFS client to reclaim locks: no 90 s wait after each start",
        "lab_without_nfs_client = true  # lab only: users' files stay in their containers (not on NFS)",
        "",
        *registry_and_images(registry),
        "[https]",
        f"acme_server = {_q(f'https://{acme}:14000/dir')}",
        f"acme_ca_bundle = {_q(record['pebble_cert'])}",
        "",
    ]
    out += _login(record.get("oidc"))
    return "\n".join(out)


def registry_and_images(registry: str, comment: str = "") -> list[str]:
    """[registry] and [images]: the lab's plain-HTTP registry holding the stand-in images."""
    return [
        "[registry]",
        f"url = {_q(registry)}{comment}",
        'username = "lab"',
        "insecure = true",
        "",
        "[images]",
        f"hub_base = {_q(registry + '/lab/jupyterhub:5')}",
        f"hub = {_q(registry + '/lab/hub:latest')}",
        f"singleuser = {_q(registry + '/lab/singleuser:latest')}",
        "",
    ]


def _login(oidc: dict[str, Any] | None) -> list[str]:
    """[hub] users and [oauth]: the lab's OpenID provider, or the open dummy login (--dummy-login)."""
    if not oidc:
        return [
            "[oauth]",
            'provider = "dummy"  # anyone logs in as anyone: right for a lab on a private network only',
            "i_understand_anyone_can_log_in = true",
            "",
        ]
    urls = lab_oidc.endpoints(oidc["ip"])
    return [
        "[hub]",
        f"admin_users = {_list(lab_oidc.ADMINS)}",
        f"allowed_users = {_list(lab_oidc.students(oidc.get('students', lab_oidc.STUDENTS)))}"
        f"  # {lab_oidc.OUTSIDER!r} exists at the provider: the hub says 403",
        "",
        "[oauth]",
        'provider = "generic"  # the lab\'s OpenID Connect provider (oidc-provider-mock, plain HTTP on the lab network)',
        f"client_id = {_q(oidc['client_id'])}  # its secret: oauth_client_secret in the secrets file",
        f"authorize_url = {_q(urls['authorize_url'])}",
        f"token_url = {_q(urls['token_url'])}",
        f"userdata_url = {_q(urls['userdata_url'])}",
        "",
    ]


def _list(items: tuple[str, ...]) -> str:
    return tomlkit.item(list(items)).as_string()


def write_private(path: Path, data: bytes | str) -> None:
    """Create with 0600 from the first byte: keys and secrets must never be readable, even briefly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
    path.chmod(0o600)


def write_site(path: Path, record: dict[str, Any]) -> None:
    record = {**record, "site_path": str(path.resolve())}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_site(record))
