"""The hub's own image registry: nginx in front of it, TLS with the site CA, pull-only nodes.

Why a proxy: the Distribution registry's htpasswd auth authenticates but never authorizes, so
every account it knows may push. Root on a compromised node would then replace the hub image,
which runs as root on the hub with the Docker socket. So the registry listens on loopback with
no accounts, and nginx on the hub's internal address lets every account read (GET, HEAD) and
only the push account write; the nodes log in with the pull account.

Why the site CA: the basic-auth header and the images cross the cluster network. The registry's
certificate comes from the site CA (actions/tls.py, kept on the admin machine); each host trusts
that CA for this registry alone (/etc/docker/certs.d/HOST:PORT/ca.crt), not system-wide.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shlex
import threading
from dataclasses import dataclass
from pathlib import Path

from hubwizard.actions import tls
from hubwizard.actions.swarm_guard import REGISTRY_PORT
from hubwizard.core.config import Site
from hubwizard.core.events import CommandStarted
from hubwizard.core.render import Facts, template_context
from hubwizard.core.secrets import made_once
from hubwizard.core.templating import render_asset
from hubwizard.engine.calls import CallResult, StepContext, register

UPSTREAM = "127.0.0.1:5001"  # the registry itself: loopback, no accounts (nginx decides)
PROXY_DIR = "/etc/nginx/hubwizard-registry"  # cert, key, CA, the two htpasswd files
NGINX_CONF = "/etc/nginx/conf.d/hubwizard-registry.conf"
REGISTRY_CONF = "/etc/docker/registry/hubwizard.yml"
REGISTRY_DROPIN = "/etc/systemd/system/docker-registry.service.d/hubwizard.conf"
STORAGE = "/var/lib/docker-registry"
PULL_SECRET = "registry_pull_password"
CERT_NAME = "registry"
_CA_LOCK = threading.Lock()  # hosts run in parallel; the CA is made once


@dataclass(frozen=True)
class Layout:
    """Where the proxy listens, where the registry listens, where their files live."""

    listen: str
    upstream: str = UPSTREAM
    dir: str = PROXY_DIR
    storage: str = STORAGE


def layout(facts: Facts) -> Layout:
    return Layout(f"{facts.hub_ip}:{REGISTRY_PORT}")


def render_configs(site: Site, facts: Facts, lay: Layout) -> tuple[str, str]:
    """(the registry's config.yml, nginx's server block) for this site."""
    ctx = template_context(site, facts) | {"reg": lay}
    return render_asset("registry/config.yml.j2", ctx), render_asset("registry/nginx.conf.j2", ctx)


def cert_names(site: Site, facts: Facts) -> tuple[list[str], list[str]]:
    """(IPs, DNS names) the registry is reached by: the hub's internal IP and [registry] url's host."""
    ips, names = [facts.hub_ip], []
    host = site.registry.url.partition(":")[0]
    try:
        ipaddress.ip_address(host)
        ips.append(host)
    except ValueError:
        names.append(host)
    return list(dict.fromkeys(ips)), names


def trust_path(site: Site) -> str:
    """Where dockerd looks for the CA of this one registry (it trusts it for nothing else)."""
    return f"/etc/docker/certs.d/{site.registry.url}/ca.crt"


def site_ca(ctx: StepContext) -> tls.SiteCA:
    state_dir = ctx.state.data.get("state_dir")
    if not state_dir:
        raise RuntimeError("the engine did not pass state_dir: cannot find the site's CA folder")
    return tls.SiteCA(Path(state_dir) / "tls", ctx.site.site.name)


def pull_password(ctx: StepContext, *, create: bool) -> str | None:
    """The nodes' pull password: from the secrets store, made once (on the hub) if absent."""
    import secrets as pysecrets

    return made_once(ctx.secrets, PULL_SECRET, lambda: pysecrets.token_urlsafe(24), create=create)


def credentials(ctx: StepContext) -> tuple[str, str] | None:
    """(user, password) this host logs in with: the push account on the hub; with a self-hosted
    registry, the pull-only account everywhere else. None without [registry] username."""
    reg = ctx.site.registry
    if not reg.username:
        return None
    if reg.self_hosted and ctx.host.name != ctx.site.hub_host.name:
        return reg.pull_username, pull_password(ctx, create=False) or ""
    return reg.username, ctx.secrets.get("registry_password") or ""


# ----------------------------------------------------------------------- the hub's proxy


def proxy_files(ctx: StepContext) -> dict[str, tuple[bytes, int]]:
    """Path -> (content, mode) of what the hub holds: both configs, the registry's cert and key."""
    ca = site_ca(ctx)
    ips, names = cert_names(ctx.site, ctx.facts)
    with _CA_LOCK:
        ca.ensure()
        cert = tls.leaf(ca, CERT_NAME, ips=ips, dns=names, role=tls.SERVER)
    lay = layout(ctx.facts)
    registry_yml, nginx_conf = render_configs(ctx.site, ctx.facts, lay)
    return {REGISTRY_CONF: (registry_yml.encode(), 0o644), NGINX_CONF: (nginx_conf.encode(), 0o644),
            f"{lay.dir}/cert.pem": (cert.cert, 0o644), f"{lay.dir}/key.pem": (cert.key, 0o600),
            f"{lay.dir}/ca.pem": (cert.ca, 0o644),
            REGISTRY_DROPIN: (f"[Service]\nExecStart=\nExecStart=/usr/bin/docker-registry serve {REGISTRY_CONF}\n"
                              .encode(), 0o644)}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _remote_sha(ctx: StepContext, paths: list[str]) -> dict[str, str]:
    res = ctx.run("sha256sum " + " ".join(shlex.quote(p) for p in paths) + " 2>/dev/null || true")
    return {parts[1]: parts[0] for parts in (line.split() for line in res.stdout.splitlines()) if len(parts) == 2}


def _accounts(ctx: StepContext, *, create: bool) -> list[tuple[str, str, str]]:
    """(htpasswd file, user, password): everyone reads, only the push account writes. Without
    ``create`` (a check, a plan) no pull password is made: an empty one matches no account."""
    reg = ctx.site.registry
    push = ctx.secrets.get("registry_password") or ""
    pull = pull_password(ctx, create=create) or ""
    return [(f"{PROXY_DIR}/readers.htpasswd", str(reg.username), push),
            (f"{PROXY_DIR}/readers.htpasswd", reg.pull_username, pull),
            (f"{PROXY_DIR}/pushers.htpasswd", str(reg.username), push)]


def _accounts_ok(ctx: StepContext) -> bool:
    for path, user, password in _accounts(ctx, create=False):
        if not password:
            return False
        if not ctx.run(f"htpasswd -vi {shlex.quote(path)} {shlex.quote(user)}", stdin=password).ok:
            return False
    pushers = f"{PROXY_DIR}/pushers.htpasswd"
    return not ctx.run(f"grep -q {shlex.quote('^' + ctx.site.registry.pull_username + ':')} {pushers}").ok


def _write_accounts(ctx: StepContext) -> None:
    """Both htpasswd files made anew (bcrypt, passwords on stdin), readable by nginx's workers."""
    made: set[str] = set()
    for path, user, password in _accounts(ctx, create=True):
        flags = "-iB" if path in made else "-ciB"
        ctx.emit(CommandStarted(ctx.step, ctx.host.name, "apply", f"htpasswd {flags} {path}.new {user}"))
        res = ctx.run(f"htpasswd {flags} {shlex.quote(path + '.new')} {shlex.quote(user)}", stdin=password)
        if not res.ok:
            raise RuntimeError(f"htpasswd for {user} in {path} failed: {res.output[-300:]}")
        made.add(path)
    for path in sorted(made):
        ctx.run(f"chgrp www-data {path}.new && chmod 640 {path}.new && mv -f {path}.new {path}")


_RESTART_REGISTRY = "systemctl daemon-reload && systemctl enable docker-registry && systemctl restart docker-registry"
_RELOAD_NGINX = "nginx -t && systemctl enable nginx && { systemctl reload nginx || systemctl restart nginx; }"


@register("registry_proxy")
def registry_proxy(ctx: StepContext, check: bool = False) -> CallResult:
    """The hub's registry behind nginx: configs, the site-CA certificate, the two account files.

    With ``check``: only compare (files, accounts); passes when all are as the site says.
    """
    if not ctx.site.registry.username:
        return CallResult(False, "[registry] self_hosted needs [registry] username (the push account)")
    files = proxy_files(ctx)
    have = _remote_sha(ctx, list(files))
    stale = [p for p, (data, _) in files.items() if have.get(p) != _sha(data)]
    accounts_ok = _accounts_ok(ctx)
    if check:
        problems = [f"differs or missing: {', '.join(stale)}"] if stale else []
        problems += [] if accounts_ok else ["the push/pull accounts in the htpasswd files are not the site's"]
        return CallResult(not problems, "; ".join(problems) or "configs, certificate and accounts up to date")
    ctx.run(f"install -d -o root -g www-data -m 750 {PROXY_DIR}")
    for path in stale:
        data, mode = files[path]
        ctx.emit(CommandStarted(ctx.step, ctx.host.name, "apply", f"write {path} (mode {mode:o})"))
        ctx.transport.put(data, path, mode=mode, sudo=True)
    if not accounts_ok:
        _write_accounts(ctx)
    # the registry first: an older install had it on HUB_IP:5000, where nginx listens now
    if {REGISTRY_CONF, REGISTRY_DROPIN} & set(stale) or not ctx.run("systemctl is-active --quiet docker-registry").ok:
        _must(ctx, _RESTART_REGISTRY, "restarting docker-registry")
    _must(ctx, _RELOAD_NGINX, "loading nginx's registry proxy")
    changed = bool(stale) or not accounts_ok
    return CallResult(True, f"{len(stale)} file(s) written" + ("; accounts written" if not accounts_ok else "")
                      if changed else "up to date", changed=changed)


def _must(ctx: StepContext, command: str, what: str) -> None:
    res = ctx.run(command)
    if not res.ok:
        raise RuntimeError(f"{what} on {ctx.host.name} failed (`{command}`): {res.output[-400:]}")


# ----------------------------------------------------------------------- every host


@register("registry_trust")
def registry_trust(ctx: StepContext, check: bool = False) -> CallResult:
    """This host's dockerd trusts the site CA for the self-hosted registry (certs.d/HOST:PORT)."""
    with _CA_LOCK:
        ca = site_ca(ctx)
        ca.ensure()
        pem = ca.cert_path.read_bytes()
    path = trust_path(ctx.site)
    if _remote_sha(ctx, [path]).get(path) == _sha(pem):
        return CallResult(True, f"{path} holds the site CA")
    if check:
        return CallResult(False, f"{path} is missing or not the site CA")
    ctx.emit(CommandStarted(ctx.step, ctx.host.name, "apply", f"write {path}"))
    ctx.transport.put(pem, path, mode=0o644, sudo=True)
    return CallResult(True, f"{path} written", changed=True)


# the user name stored for the registry, read from Docker's config (the password is never printed)
_STORED_USER = ("f=\"$HOME/.docker/config.json\"; [ -r \"$f\" ] && grep -A3 -F {key} \"$f\" "
                "| sed -n 's/.*\"auth\": *\"\\([^\"]*\\)\".*/\\1/p' | head -1 | base64 -d 2>/dev/null | cut -d: -f1")


@register("registry_login")
def registry_login(ctx: StepContext, check: bool = False) -> CallResult:
    """This host is logged in to the registry with its own account (pull-only on the nodes when
    the hub serves the registry). The password reaches `docker login` on stdin only."""
    creds = credentials(ctx)
    if creds is None:
        return CallResult(True, "no [registry] username: nothing to log in", skipped=True)
    user, password = creds
    url = ctx.site.registry.url
    if not password:
        return CallResult(False, f"no password for registry account {user}: run the registry-self-hosted step "
                          "(it makes registry_pull_password)" if user == ctx.site.registry.pull_username
                          else f"no registry_password for {user} in the secrets file")
    stored = ctx.run(_STORED_USER.format(key=shlex.quote(f'"{url}"'))).stdout.strip()
    works = ctx.run(f"docker login {shlex.quote(url)} </dev/null")
    if stored == user and works.ok:
        return CallResult(True, f"logged in to {url} as {user}")
    problem = (f"logged in to {url} as {stored!r}, the site wants {user!r}" if works.ok
               else f"stored registry login fails: {works.output[-300:]}")
    if check:
        return CallResult(False, problem)
    ctx.emit(CommandStarted(ctx.step, ctx.host.name, "apply",
                            f"docker login {url} --username {user} --password-stdin"))
    res = ctx.run(f"docker login {shlex.quote(url)} --username {shlex.quote(user)} --password-stdin", stdin=password)
    if not res.ok:
        return CallResult(False, f"docker login {url} as {user} on {ctx.host.name} failed: {res.output[-300:]}")
    return CallResult(True, f"logged in to {url} as {user}", changed=True)
