"""What the hub's users meet on the web: the certificate (HTTPS) and the login redirect (OAuth).

Why Python and not shell in the recipes: these probes run from the admin machine, where the
admin's users are, not on the hub. ``https()`` is also how the culler and end-to-end checks
reach the hub API.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hubwizard.core.config import Site
from hubwizard.engine.calls import CallResult, StepContext, register

ACME_CA_ON_HUB = "/etc/hubwizard/acme-ca.pem"
# Where OAuth providers send the browser to log in (generic OIDC: from the site file).
AUTHORIZE_URLS = {
    "github": "https://github.com/login/oauth/authorize",
    "google": "https://accounts.google.com/o/oauth2/v2/auth",
    "cilogon": "https://cilogon.org/authorize",
    "globus": "https://auth.globus.org/v2/oauth2/authorize",
}


# --------------------------------------------------------------------------- HTTPS


@register("upload_acme_ca")
def upload_acme_ca(ctx: StepContext) -> CallResult:
    """Apply: the CA bundle certbot trusts for the ACME server (lab, private CA)."""
    bundle = ctx.site.https.acme_ca_bundle
    if not bundle:
        return CallResult(True, "no acme_ca_bundle: certbot uses the system trust", changed=False)
    try:
        data = Path(bundle).expanduser().read_bytes()
    except OSError as exc:
        return CallResult(False, f"cannot read https.acme_ca_bundle {bundle}: {exc}")
    ctx.transport.put(data, ACME_CA_ON_HUB, mode=0o644, sudo=True)
    return CallResult(True, f"{ACME_CA_ON_HUB} uploaded", changed=True)


def trust_roots(site: Site) -> list[Path]:
    """Extra roots a TLS check trusts: the lab's pebble root beside its ACME CA bundle."""
    bundle = site.https.acme_ca_bundle
    if not bundle:
        return []
    root = Path(bundle).expanduser().with_name("pebble-root.pem")
    return [root] if root.exists() else []


def hub_address(site: Site) -> str:
    """Where the admin reaches the domain: DNS if it resolves, else the hub's SSH address."""
    try:
        return str(socket.getaddrinfo(site.site.domain, 443, type=socket.SOCK_STREAM)[0][4][0])
    except OSError:
        return site.hub_host.address


def tls_context(site: Site) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    for root in trust_roots(site):
        ctx.load_verify_locations(cafile=str(root))
    return ctx


def days_left(not_after: str, now: datetime | None = None) -> int:
    """Days until an X.509 notAfter as Python's ssl module prints it ('Jun  1 12:00:00 2026 GMT')."""
    end = datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), UTC)
    return (end - (now or datetime.now(UTC))).days


@register("tls_handshake")
def tls_handshake(ctx: StepContext) -> CallResult:
    """Verify, from the admin machine: chain valid, name matches, days left."""
    site = ctx.site
    address = hub_address(site)
    try:
        with socket.create_connection((address, 443), timeout=10) as raw, \
                tls_context(site).wrap_socket(raw, server_hostname=site.site.domain) as tls:
            cert = tls.getpeercert()
            version = tls.version()
    except ssl.SSLCertVerificationError as exc:
        return CallResult(False, f"TLS to {site.site.domain} at {address}:443: {exc.verify_message} ({exc})")
    except OSError as exc:
        return CallResult(False, f"TLS to {site.site.domain} at {address}:443: {exc}")
    if not cert:  # with verification on, a completed handshake always has a peer certificate
        return CallResult(False, f"TLS to {site.site.domain} at {address}:443: no peer certificate")
    issuer = {str(rdn[0][0]): str(rdn[0][1]) for rdn in cert.get("issuer", ())
              if isinstance(rdn, tuple) and rdn and isinstance(rdn[0], tuple)}
    left = days_left(str(cert["notAfter"]))
    if left < 7:
        return CallResult(False, f"certificate of {site.site.domain} expires in {left} days")
    return CallResult(True, f"{site.site.domain} at {address}: {version}, chain valid, issuer "
                            f"{issuer.get('commonName', '?')}, {left} days left")


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


def https(site: Site, method: str, path: str, *, token: str | None = None, body: Any = None,
          timeout: float = 30) -> HttpReply:
    """One HTTPS request to the domain (SNI and Host = domain), redirects not followed."""
    address = hub_address(site)
    conn = http.client.HTTPSConnection(site.site.domain, 443, context=tls_context(site), timeout=timeout)
    raw = socket.create_connection((address, 443), timeout=timeout)
    conn.sock = tls_context(site).wrap_socket(raw, server_hostname=site.site.domain)
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"token {token}"
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return HttpReply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


# --------------------------------------------------------------------------- OAuth


def check_redirect(location: str, site: Site) -> tuple[bool, str]:
    """Does a login redirect go to the provider with our client id and callback URL?"""
    provider = site.oauth.provider
    expected = AUTHORIZE_URLS.get(provider) or site.oauth.authorize_url or ""
    url = urllib.parse.urlsplit(location)
    want = urllib.parse.urlsplit(expected)
    query = urllib.parse.parse_qs(url.query)
    callback = f"https://{site.site.domain}/hub/oauth_callback"
    problems = []
    if (url.scheme, url.netloc, url.path) != (want.scheme, want.netloc, want.path):
        problems.append(f"goes to {url.scheme}://{url.netloc}{url.path}, not {expected}")
    if query.get("client_id") != [site.oauth.client_id]:
        problems.append(f"client_id is {query.get('client_id')}, not {site.oauth.client_id!r}")
    if query.get("redirect_uri") != [callback]:
        problems.append(f"redirect_uri is {query.get('redirect_uri')}, not {callback!r}")
    if problems:
        return False, "login redirect " + "; ".join(problems)
    return True, f"login redirects to {expected} with client_id {site.oauth.client_id} and callback {callback}"


@register("oauth_redirect")
def oauth_redirect(ctx: StepContext) -> CallResult:
    """Verify: GET /hub/oauth_login (not followed) sends the browser to the provider correctly."""
    if ctx.site.oauth.provider == "dummy":
        return CallResult(True, "provider dummy: no OAuth redirect (a lab/rehearsal login)", skipped=True)
    try:
        reply = https(ctx.site, "GET", "/hub/oauth_login")
    except OSError as exc:
        return CallResult(False, f"GET https://{ctx.site.site.domain}/hub/oauth_login: {exc}")
    if reply.status not in (301, 302, 303, 307):
        return CallResult(False, f"GET /hub/oauth_login answered {reply.status}, not a redirect: {reply.body[:200]!r}")
    ok, message = check_redirect(reply.headers.get("location", ""), ctx.site)
    return CallResult(ok, message)
