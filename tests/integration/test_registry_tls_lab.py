"""The self-hosted registry on a real hub and node (issue 12 item 10), in a 1+1 lab.

Steps registry-self-hosted and registry are applied (`apply --only`) to lab machines that
have Docker. Then, on the node, as root on a compromised node would: its dockerd pulls the
hub's image over TLS, trusting the site CA through /etc/docker/certs.d only (the registry is
not among its insecure registries: without the CA file the pull fails on the certificate);
a `docker push` with the login it holds is refused. A node that still held the push login
(an install from before) is logged in again with the pull-only account. A second apply
changes nothing.

Set HUBWIZARD_REGTLS_LAB=NAME:SITE_PATH to run against a lab of your own (`lab up --nodes 1
--with-docker`; kept).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.swarm_lab import hubwizard

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(3600)]
PUSH_USER, PUSH_PASSWORD = "hubpush", "hubpush-secret-9d1e"


@dataclass
class RegLab:
    site: Path
    record: dict[str, Any]

    def ssh(self, host: str, command: str) -> subprocess.CompletedProcess:
        ip = self.record["machines"][host]["ip"]
        return subprocess.run(
            ["ssh", "-i", self.record["key"], "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
             "-o", f"UserKnownHostsFile={self.record['known_hosts']}", f"root@{ip}", command],
            capture_output=True, text=True, timeout=600)

    @property
    def hub_ip(self) -> str:
        return next(m["ip"] for m in self.record["machines"].values() if m.get("role") == "hub")

    @property
    def node(self) -> str:
        return next(h for h, m in self.record["machines"].items() if m.get("role") == "node" and not m.get("spare"))

    def apply(self, step: str) -> subprocess.CompletedProcess:
        return hubwizard("apply", "-c", str(self.site), "--only", step, "--yes", timeout=1800)


def self_hosted_site(lab_site: Path, hub_ip: str) -> Path:
    """The lab's site with the hub serving the registry: no insecure, a push account of its own."""
    text = lab_site.read_text()
    text = re.sub(r"\[registry\]\n(?:[a-z_]+ = .*\n)+", f'[registry]\nurl = "{hub_ip}:5000"\nusername = "{PUSH_USER}"\n'
                  "self_hosted = true\n", text)
    text = re.sub(r'^hub = ".*"$', f'hub = "{hub_ip}:5000/lab/hub:latest"', text, flags=re.M)
    site = lab_site.with_name("self-hosted.toml")
    site.write_text(text)
    secrets = lab_site.with_name(lab_site.stem + ".secrets.toml").read_text()
    secrets = re.sub(r"^registry_password = .*$", f'registry_password = "{PUSH_PASSWORD}"', secrets, flags=re.M)
    target = site.with_name("self-hosted.secrets.toml")
    target.write_text(secrets)
    target.chmod(0o600)
    return site


@pytest.fixture(scope="module")
def reglab(tmp_path_factory) -> Iterator[RegLab]:
    from hubwizard.lab import lifecycle as lab_mod

    own = os.environ.get("HUBWIZARD_REGTLS_LAB")
    if own:
        name, site = own.split(":", 1)
        record = lab_mod.load_record(name)
        lab = RegLab(Path(site), record)
        lab.site = self_hosted_site(Path(site), lab.hub_ip)
        yield lab
        return
    from tests.integration.lab_fixture import unique_name

    name = unique_name("regtls")
    site = tmp_path_factory.mktemp("regtls") / "site.toml"
    try:
        up = hubwizard("lab", "up", "--name", name, "--nodes", "1", "--with-docker", "-o", str(site), timeout=1500)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-2000:]
        lab = RegLab(site, lab_mod.load_record(name))
        lab.site = self_hosted_site(site, lab.hub_ip)
        yield lab
    finally:
        hubwizard("lab", "down", "--name", name, timeout=900)


def test_nodes_pull_over_tls_with_the_site_ca_and_cannot_push(reglab):
    hosted = reglab.apply("registry-self-hosted")
    assert hosted.returncode == 0, hosted.stdout[-3000:] + hosted.stderr[-2000:]
    assert "fail" not in hosted.stdout.replace("0 failed", "")
    url = f"{reglab.hub_ip}:5000"
    # a node that holds the push account's login (as every node did before)
    old = reglab.ssh(reglab.node, f"printf %s {shlex.quote(PUSH_PASSWORD)} | docker login {url} -u {PUSH_USER} "
                                  "--password-stdin || true")
    logins = reglab.apply("registry")
    assert logins.returncode == 0, logins.stdout[-3000:] + logins.stderr[-2000:]
    if "Login Succeeded" in old.stdout:
        assert "hubwizard-pull --password-stdin" in logins.stdout  # logged in again, pull-only

    image = f"{url}/lab/tiny:1"
    pushed = reglab.ssh("hub", f"cd /tmp && echo hub > hello && tar c hello | docker import - {image} >/dev/null "
                               f"&& docker push {image}")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr  # the hub's push account
    daemon = reglab.ssh(reglab.node, "cat /etc/docker/daemon.json").stdout
    assert url not in daemon  # not an insecure registry: TLS is verified

    pulled = reglab.ssh(reglab.node, f"docker rmi -f {image} >/dev/null 2>&1; docker pull {image}")
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    attack = reglab.ssh(reglab.node, f"docker tag {image} {url}/lab/hub:latest && docker push {url}/lab/hub:latest")
    assert attack.returncode != 0 and "unauthorized" in attack.stdout + attack.stderr, attack.stdout + attack.stderr

    trust = f"/etc/docker/certs.d/{url}/ca.crt"
    untrusted = reglab.ssh(reglab.node, f"mv {trust} /tmp/ca.crt; docker rmi -f {image} >/dev/null 2>&1; "
                                        f"docker pull {image}; rc=$?; mv /tmp/ca.crt {trust}; exit $rc")
    assert untrusted.returncode != 0 and "certificate signed by unknown authority" in untrusted.stderr, untrusted.stderr

    for step in ("registry-self-hosted", "registry"):
        again = reglab.apply(step)
        assert again.returncode == 0 and "nothing changed" in again.stdout, again.stdout[-2000:]
