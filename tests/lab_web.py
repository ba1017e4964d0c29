"""The lab's hub as its users reach it: https://DOMAIN resolved to the hub machine, the lab's ACME
(pebble) root trusted, and the OpenID provider's form filled in like a person would.

Why an adapter and not /etc/hosts: several labs run side by side on one machine, each with its
own hub address for the same domain; the name is resolved per session, never machine-wide.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from requests.adapters import HTTPAdapter

from hubwizard.core.config import Site, load_site


@dataclass
class LabHub:
    """What a user of the lab's hub needs: the domain, the hub's address, the CA to trust."""

    site_path: Path
    site: Site

    @property
    def domain(self) -> str:
        return self.site.site.domain

    @property
    def address(self) -> str:
        return self.site.hub_host.address

    @property
    def ca(self) -> Path:
        """The pebble root that issues the hub's certificate in the lab."""
        bundle = self.site.https.acme_ca_bundle
        assert bundle, "the lab site has no acme_ca_bundle"
        return Path(bundle).with_name("pebble-root.pem")

    @property
    def url(self) -> str:
        return f"https://{self.domain}"


class _Resolve(HTTPAdapter):
    """Connect to the hub's address for the domain, with SNI and the certificate check on the domain."""

    def __init__(self, domain: str, address: str) -> None:
        self.domain, self.address = domain, address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - requests' signature
        kwargs.update(server_hostname=self.domain, assert_hostname=self.domain)
        super().init_poolmanager(*args, **kwargs)

    def send(self, request, **kwargs):  # noqa: ANN001, ANN003, ANN201 - requests' signature
        sent = request.copy()
        parts = urllib.parse.urlsplit(sent.url)
        sent.headers["Host"] = parts.netloc
        sent.url = urllib.parse.urlunsplit(parts._replace(netloc=self.address))
        response = super().send(sent, **kwargs)
        # Relative redirects and cookies resolve against the domain, not the address.
        response.url, response.request = request.url, request
        return response


def session(hub: LabHub) -> requests.Session:
    """A browser-like session: cookies kept, redirects followed, the lab CA trusted for the hub."""
    s = requests.Session()
    s.trust_env = False  # lab traffic never goes through a proxy
    s.verify = str(hub.ca)
    s.mount(f"https://{hub.domain}", _Resolve(hub.domain, hub.address))
    return s


def oidc_login(s: requests.Session, hub: LabHub, user: str, next_path: str = "/hub/home") -> requests.Response:
    """The authorization-code flow as a browser runs it: hub -> provider's form -> callback -> hub."""
    form = s.get(f"{hub.url}/hub/oauth_login", params={"next": next_path}, timeout=60)
    assert form.status_code == 200, f"the login did not reach the provider's form: {form.status_code} {form.url}"
    assert form.url.startswith(hub.site.oauth.authorize_url or "?"), form.url
    assert 'name="sub"' in form.text, form.text[:500]
    # The form posts back to the authorize URL (its query names client, callback and state).
    return s.post(form.url, data={"sub": user}, timeout=120)


def lab_hub(request: pytest.FixtureRequest) -> LabHub:
    """The hub under test: $HUBWIZARD_TEST_LAB_SITE (a lab already applied by hand), else the
    session's shared swarm lab, converged. Skips when the lab logs in with the dummy login."""
    given = os.environ.get("HUBWIZARD_TEST_LAB_SITE")
    if given:
        path = Path(given)
    else:
        swarm_lab = request.getfixturevalue("swarm_lab")
        swarm_lab.converged()
        path = swarm_lab.site
    hub = LabHub(path, load_site(path))
    if hub.site.oauth.provider != "generic":
        pytest.skip(f"lab {path} logs in with {hub.site.oauth.provider!r}, not the lab's OpenID provider")
    return hub
