"""Facts every step needs and no site file should have to spell out: which internal IP
each host uses to reach the hub, the cluster subnet, and whether each swarm host's kernel has
IPVS (the endpoint mode, core.endpoint). Read-only probes, once per run."""

from __future__ import annotations

import ipaddress
import re
import shlex
from concurrent.futures import ThreadPoolExecutor

from hubwizard.core.config import Site
from hubwizard.core.endpoint import IPVS_PROBE, Ipvs, parse_probe, swarm_hosts
from hubwizard.core.errors import HubwizardError
from hubwizard.remote.connections import Connections


def _route_src(conns: Connections, host: str, dest: str) -> str | None:
    """``ip route get DEST`` on HOST -> the source address it would use (sends nothing)."""
    res = conns.get(host).run(f"ip -4 -o route get {shlex.quote(dest)} 2>/dev/null || true", sudo=False)
    m = re.search(r"\bsrc (\d+\.\d+\.\d+\.\d+)", res.stdout)
    return m.group(1) if m else None


def _resolve_on(conns: Connections, host: str, name: str) -> str:
    try:
        ipaddress.ip_address(name)
        return name
    except ValueError:
        pass
    res = conns.get(host).run(f"getent ahostsv4 {shlex.quote(name)} | head -n1", sudo=False)
    return res.stdout.split()[0] if res.stdout.split() else name


def _hub_ip(site: Site, conns: Connections) -> str:
    hub = site.hub_host
    if hub.internal_address:
        return hub.internal_address
    for node in site.nodes:
        dest = _resolve_on(conns, hub.name, node.address)
        src = _route_src(conns, hub.name, dest)
        if src:
            return src
    res = conns.get(hub.name).run("hostname -I", sudo=False)
    if not res.stdout.split():
        raise HubwizardError(f"cannot find the internal IP of the hub {hub.name}", fix="set internal_address for it")
    return res.stdout.split()[0]


def _ipvs(conns: Connections, host: str) -> tuple[str, Ipvs]:
    """Does HOST's kernel have IPVS (loaded or loadable)? Unknown when the probe cannot say."""
    res = conns.get(host).run(IPVS_PROBE, sudo=False)
    return host, parse_probe(res.stdout)


def _subnet(site: Site, ips: dict[str, str]) -> str:
    """The configured subnet, else the narrowest one holding the hosts' internal addresses
    (/24 at the widest, "" = one export line per host). Never the hub's interface network:
    on a cloud VM that is a provider's /20 full of strangers."""
    from hubwizard.core.render import derive_subnet

    if site.site.subnet:
        return site.site.subnet
    return derive_subnet(ips.get(h.name, "") for h in site.active_hosts)


def gather(site: Site, conns: Connections):
    """Probe every active host (in parallel) and return a render.Facts."""
    from hubwizard.core.render import Facts

    hub_ip = _hub_ip(site, conns)

    def ip_of(host) -> tuple[str, str]:
        if host.name == site.hub_host.name:
            return host.name, hub_ip
        return host.name, host.internal_address or _route_src(conns, host.name, hub_ip) or host.address

    hosts = site.active_hosts
    swarm = swarm_hosts(site) if site.site.track == "swarm-mode" else []
    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        ipvs = pool.map(lambda name: _ipvs(conns, name), swarm)
        ips = dict(pool.map(ip_of, hosts))
        ipvs_of = dict(ipvs)
    nfs = site.nfs_host
    return Facts(hub_ip=hub_ip, subnet=_subnet(site, ips), ips=ips, nfs_ip=ips.get(nfs.name, hub_ip), ipvs=ipvs_of)
