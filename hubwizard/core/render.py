"""Every file hubwizard writes to a host, rendered from the Jinja2 templates in ``assets/``.

The engine probes the hosts and fills :class:`Facts`; ``hubwizard render`` works without hosts
through :meth:`Facts.offline`. :func:`template_context` is the one dictionary every template
and every recipe command sees, and :func:`generated_files` says which files this site's track
and options need, where each goes on which hosts, and with which mode.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hubwizard.core.config import Site
from hubwizard.core.endpoint import Ipvs, choose
from hubwizard.core.templating import render_asset

# Where things live on the hosts. Recipes use these through ``paths`` in the context, so a
# path is spelled in one place only.
PATHS: MappingProxyType[str, str] = MappingProxyType(
    {
        # the hub image's build context (hub)
        "hub_build": "/srv/hubwizard/hub",
        # nginx: the HTTPS site, and the HTTP-only bootstrap used until the first certificate
        # exists; the HTTPS step links sites-enabled/jupyterhub to one of them
        "nginx_site": "/etc/nginx/sites-available/jupyterhub",
        "nginx_site_http": "/etc/nginx/sites-available/jupyterhub-http",
        "nginx_enabled": "/etc/nginx/sites-enabled/jupyterhub",
        "acme_webroot": "/var/www/letsencrypt",
        "certbot_deploy_hook": "/etc/letsencrypt/renewal-hooks/deploy/hubwizard-reload-nginx.sh",
        "letsencrypt_live": "/etc/letsencrypt/live",
        # docker
        "daemon_json": "/etc/docker/daemon.json",
        "docker_dropin": "/etc/systemd/system/docker.service.d/hubwizard.conf",
        "docker_tls": "/etc/docker/tls",  # ca.pem, server-cert.pem, server-key.pem (every host)
        "docker_tls_client": "/etc/docker/tls/client",  # ca.pem, cert.pem, key.pem (hub)
        # NFS
        "exports": "/etc/exports.d/hubwizard.exports",
        "ganesha_conf": "/etc/ganesha/ganesha.conf",
        "set_quota": "/usr/local/sbin/hubwizard-set-quota",
        "projects": "/etc/projects",
        "projid": "/etc/projid",
        # classic: autofs on the nodes
        "auto_master": "/etc/auto.master.d/hubwizard.autofs",
        "auto_home": "/etc/auto.home",
        # inside the hub container
        "secrets_dir": "/run/secrets",
        "hub_config": "/srv/jupyterhub/jupyterhub_config.py",
    }
)

# Names shared by templates and recipes.
HUB_SERVICE = "jupyterhub"  # the Swarm service (and DNS name on the overlay network) of the hub
OAUTH_SECRET_NAME = "oauth_client_secret"  # Docker secret holding the OAuth client secret
API_TOKEN_SECRET_NAME = "hubwizard_api_token"  # Docker secret for the end-to-end check's token
USERS_TOKEN_SECRET_NAME = "hubwizard_users_token"  # Docker secret: the token apply changes the user lists with
USERS_FILE = "hubwizard-users.json"  # in the hub's data volume: the site's user lists, read at start-up
NB_UID = 1000  # jovyan in the Jupyter docker-stacks images
NB_GID = 100
DOCKER_TLS_PORT = 2376
DOCKER_PLAIN_PORT = 2375
SWARM_MANAGER_PORT = 4000
CONSUL_PORT = 8500


@dataclass(frozen=True)
class Facts:
    """What the engine learned from the hosts (or, offline, from the site file alone)."""

    hub_ip: str = "127.0.0.1"  # internal IP of the hub: what the nodes use to reach it
    subnet: str = ""  # cluster CIDR such as 10.0.0.0/24; "" = unknown, files list each host
    ips: dict[str, str] = field(default_factory=dict)  # host name -> internal IP
    nfs_ip: str = "127.0.0.1"
    # swarm host name -> its kernel's IPVS (core.endpoint); empty offline: auto means dnsrr
    ipvs: dict[str, Ipvs] = field(default_factory=dict)

    @classmethod
    def offline(cls, site: Site) -> Facts:
        """Facts from the site file alone: internal addresses, else SSH addresses."""
        ips = {h.name: h.internal_address or h.address for h in site.hosts}
        subnet = site.site.subnet or derive_subnet(ips[h.name] for h in site.active_hosts)
        return cls(
            hub_ip=ips[site.hub_host.name],
            subnet=subnet,
            ips=ips,
            nfs_ip=ips[site.nfs_host.name],
        )


def derive_subnet(addresses: Any) -> str:
    """The smallest network holding every IPv4 address given, /24 at the widest; "" when there is none.

    Why so narrow: the result is who may mount the NFS export (as root) and reach Docker's
    ports, so it must not take in other people's machines. Host names (not IPs) are skipped; a
    public address, or hosts spread wider than a /24, give "" and the files then list each host.
    """
    ips = []
    for addr in addresses:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            continue
        if ip.version == 4:
            ips.append(ip)
    if not ips or not all(ip.is_private for ip in ips):
        return ""
    for prefix in range(32, 23, -1):
        net = ipaddress.ip_network(f"{ips[0]}/{prefix}", strict=False)
        if all(ip in net for ip in ips):
            return str(net)
    return ""


def template_context(site: Site, facts: Facts) -> dict[str, Any]:
    """What every template and recipe command sees."""
    clients = nfs_clients(site, facts)
    return {
        "cfg": site,
        "hub_host": site.hub_host,
        "nodes": site.nodes,
        "hosts": site.active_hosts,
        "nfs_host": site.nfs_host,
        "facts": facts,
        "paths": dict(PATHS),
        "hub_service": HUB_SERVICE,
        "oauth_secret_name": OAUTH_SECRET_NAME,
        "api_token_secret_name": API_TOKEN_SECRET_NAME,
        "users_token_secret_name": USERS_TOKEN_SECRET_NAME,
        "users_file": USERS_FILE,
        "nb_uid": NB_UID,
        "nb_gid": NB_GID,
        "docker_tls_port": DOCKER_TLS_PORT,
        "docker_plain_port": DOCKER_PLAIN_PORT,
        "swarm_manager_port": SWARM_MANAGER_PORT,
        "consul_port": CONSUL_PORT,
        # classic: the discovery URL managers and agents meet at (every Consul server)
        "consul_url": consul_url(site, facts),
        # who may mount the exports: the cluster subnet, or each host when it is unknown
        "nfs_clients": clients,
        # pip packages of the hub image (requirements.txt)
        "hub_requirements": hub_requirements(site),
        # the Swarm endpoint mode (vip or dnsrr) of the hub and users' servers, and why
        "endpoint": choose(site, facts.ipvs),
    }


def consul_url(site: Site, facts: Facts) -> str:
    """consul://HUB:8500 (plus each other Consul server, comma-separated, as libkv reads it)."""
    return "consul://" + ",".join(f"{facts.ips.get(h.name, h.address)}:{CONSUL_PORT}" for h in site.consul_hosts)


def nfs_clients(site: Site, facts: Facts) -> list[str]:
    """Who may mount the exports: the cluster subnet, plus any host address outside it
    (every host's address when the subnet is unknown). Never everyone."""
    clients = [facts.subnet] if facts.subnet else []
    network = None
    if facts.subnet:
        try:
            network = ipaddress.ip_network(facts.subnet, strict=False)
        except ValueError:
            network = None  # not a CIDR: the token check of the templates refuses it
    extra: set[str] = set()
    for host in site.active_hosts:
        addr = facts.ips.get(host.name) or host.internal_address or host.address
        try:
            if network is not None and ipaddress.ip_address(addr) in network:
                continue
        except ValueError:
            pass  # a host name: listed as is
        extra.add(addr)
    return clients + sorted(extra)


def hub_requirements(site: Site) -> list[str]:
    """What the hub image installs on top of the JupyterHub base image."""
    reqs = ["dockerspawner>=13"]  # ships SwarmSpawner and DockerSpawner
    if site.oauth.provider != "dummy":
        reqs.append("oauthenticator>=17.4")  # 17.4 renamed CILogon's allowed_idps to idps
    reqs.append("jupyterhub-idle-culler>=1.2")
    return reqs


@dataclass(frozen=True)
class GeneratedFile:
    host_role: str  # "hub" | "nodes" | "nfs" | "all"
    path: str  # absolute path on the host
    content: str
    mode: int
    description: str
    host: str | None = None  # set for a file whose content differs per host: only that host gets it

    @property
    def review_path(self) -> str:
        """Where ``hubwizard render`` writes it, relative to the output folder."""
        group = self.host_role if self.host is None else f"{self.host_role}@{self.host}"
        return f"{group}/{self.path.lstrip('/')}"


def _file(name: str, ctx: dict[str, Any], role: str, path: str, mode: int, description: str) -> GeneratedFile:
    return GeneratedFile(role, path, render_asset(name, ctx), mode, description)


def generated_files(site: Site, facts: Facts) -> list[GeneratedFile]:
    """The files this site's track and options need, rendered."""
    ctx = template_context(site, facts)
    p = PATHS
    out: list[GeneratedFile] = []
    classic = site.site.track == "classic"
    build = p["hub_build"]
    prefix = "classic/" if classic else ""

    out.append(_file("Dockerfile.j2", ctx, "hub", f"{build}/Dockerfile", 0o644, "hub image: JupyterHub + spawner"))
    out.append(_file("requirements.txt.j2", ctx, "hub", f"{build}/requirements.txt", 0o644, "pip packages of the hub image"))
    out.append(
        _file(
            f"{prefix}jupyterhub_config.py.j2",
            ctx,
            "hub",
            f"{build}/jupyterhub_config.py",
            0o644,
            "JupyterHub configuration (copied into the hub image)",
        )
    )
    out.append(_file("daemon.json.j2", ctx, "all", p["daemon_json"], 0o644, "dockerd settings (registries, logs, TLS)"))
    if classic and (site.classic.docker_tls or site.classic.allow_plain_tcp):
        # dockerd listens on each host's own internal address: one drop-in per host
        for host in site.active_hosts:
            host_ctx = {**ctx, "host": host, "host_ip": facts.ips.get(host.name, host.address)}
            out.append(
                GeneratedFile(
                    "hub" if host.role == "hub" else "nodes" if host.role == "node" else "nfs",
                    p["docker_dropin"],
                    render_asset("classic/docker-tcp.conf.j2", host_ctx),
                    0o644,
                    f"systemd drop-in: dockerd on {host.name} also listens on its internal address",
                    host=host.name,
                )
            )
    if site.https.enabled:
        out.append(_file("nginx.conf.j2", ctx, "hub", p["nginx_site"], 0o644, "nginx HTTPS site in front of the hub"))
        out.append(
            _file(
                "nginx-http.conf.j2",
                ctx,
                "hub",
                p["nginx_site_http"],
                0o644,
                "nginx HTTP-only site until the first certificate exists",
            )
        )
        out.append(
            _file(
                "reload-nginx.sh.j2",
                ctx,
                "hub",
                p["certbot_deploy_hook"],
                0o755,
                "certbot deploy hook: reload nginx after a renewal",
            )
        )
    if classic:
        if site.storage.kind in ("nfs", "autofs"):
            out.append(_file("classic/exports.j2", ctx, "hub", p["exports"], 0o644, "NFS export of /home to the nodes"))
            out.append(_file("classic/auto.master.j2", ctx, "nodes", p["auto_master"], 0o644, "autofs: /home from the map"))
            out.append(_file("classic/auto.home.j2", ctx, "nodes", p["auto_home"], 0o644, "autofs map: /home/USER from the hub"))
        return out

    # beside the build context, not in it: a changed list makes no new image (hub_users copies it)
    out.append(GeneratedFile("hub", f"/srv/hubwizard/{USERS_FILE}", hub_users_json(site), 0o644,
                             "who may log in and who is admin (the hub's data volume, not its image)"))
    if site.storage.kind == "nfs":
        if site.storage.implementation == "ganesha":
            out.append(_file("ganesha.conf.j2", ctx, "nfs", p["ganesha_conf"], 0o644, "nfs-ganesha export of the user folders"))
        elif site.storage.implementation == "kernel":
            out.append(_file("exports.j2", ctx, "nfs", p["exports"], 0o644, "kernel NFS export of the user folders"))
        else:  # auto: the storage step picks the one the kernel supports
            out.append(_file("exports.j2", ctx, "nfs", p["exports"], 0o644, "kernel NFS export of the user folders"))
            out.append(
                _file(
                    "ganesha.conf.j2",
                    ctx,
                    "nfs",
                    p["ganesha_conf"],
                    0o644,
                    "nfs-ganesha export (used where the kernel has no nfsd)",
                )
            )
    if site.quotas.enabled:
        out.append(_file("set_quota.sh.j2", ctx, "nfs", p["set_quota"], 0o755, "XFS project quota for one user folder"))
    return out


def hub_users_json(site: Site) -> str:
    """The site file's user lists as the swarm-track hub reads them at start-up.

    Why a file in the hub's data volume and not in jupyterhub_config.py: the config lives in the
    hub image, so a list there would make a new image and restart the hub; this way a changed
    list reaches the running hub through its REST API (actions.hub_users) and the same file
    makes a later restart agree. ``allow_all``: the dummy login with no list lets anyone in."""
    import json

    hub = site.hub
    allow_all = site.oauth.provider == "dummy" and not hub.allowed_users
    return json.dumps({"admin_users": sorted(hub.admin_users), "allowed_users": sorted(hub.allowed_users),
                       "allow_all": allow_all}, indent=1) + "\n"


def render_all(site: Site, facts: Facts, out_dir: Path) -> list[Path]:
    """Write every generated file under ``out_dir/<host_role>/<path>`` for review
    (``out_dir/<host_role>@<host>/<path>`` for a file made for one host)."""
    written: list[Path] = []
    for f in generated_files(site, facts):
        target = Path(out_dir) / f.review_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f.content, encoding="utf-8")
        target.chmod(f.mode)
        written.append(target)
    return written
