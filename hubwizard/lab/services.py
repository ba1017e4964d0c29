"""What a real site has around its machines, rebuilt inside the lab: a registry, an ACME CA and
an OpenID Connect provider.

Why real ones: the recipes must push, pull and get certificates exactly as in production, so
the lab runs Debian's docker-registry (distribution 2.8) with htpasswd auth, and pebble with
pebble-challtestsrv answering every name with the hub's IP so HTTP-01 validation reaches the
hub's port 80 like Let's Encrypt would reach a public server. The OpenID Connect provider
(oidc-provider-mock, see hubwizard.lab.oidc) is where the hub sends its users to log in.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import ssl
import time
import urllib.request
from pathlib import Path
from typing import Any

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.oid import NameOID

from hubwizard.lab import oidc as lab_oidc
from hubwizard.lab.dockerguard import docker_lock
from hubwizard.lab.images import text_tar
from hubwizard.lab.machines import HOST_LABEL, ROLE_LABEL, container_name, lab_labels
from hubwizard.lab.site import write_private

REGISTRY_USER = "lab"
CONF = "/etc/hubwizard-lab"

REGISTRY_YML = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :5000
auth:
  htpasswd:
    realm: hubwizard-lab
    path: /etc/hubwizard-lab/htpasswd
"""

# Waits for its certificate (written once the container has an IP), then runs the DNS stand-in
# and pebble. NOSLEEP/NONCEREJECT=0: deterministic, fast validations for tests.
ACME_CMD = """\
while [ ! -f /etc/hubwizard-lab/go ]; do sleep 0.1; done
pebble-challtestsrv -defaultIPv4 "$HUB_IP" -defaultIPv6 "" -dns01 127.0.0.1:8053 -http01 "" \
  -https01 "" -tlsalpn01 "" -management 0.0.0.0:8055 &
exec pebble -config /etc/hubwizard-lab/pebble.json -dnsserver 127.0.0.1:8053
"""

PEBBLE_JSON = {
    "pebble": {
        "listenAddress": "0.0.0.0:14000",
        "managementListenAddress": "0.0.0.0:15000",
        "certificate": f"{CONF}/cert.pem",
        "privateKey": f"{CONF}/key.pem",
        "httpPort": 80,
        "tlsPort": 443,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }
}


def ssh_keypair(path: Path) -> str:
    """Write a fresh ed25519 key pair (OpenSSH format, 0600) and return the public key line."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    write_private(path, private)
    line = public.decode() + " hubwizard-lab"
    path.with_suffix(".pub").write_text(line + "\n")
    return line


def _support(client: Any, lab: str, host: str, image: str, network: str, **kwargs: Any) -> Any:
    return client.containers.create(
        image,
        name=container_name(lab, host),
        hostname=host,
        labels={**lab_labels(lab), ROLE_LABEL: host, HOST_LABEL: host},
        network=network,
        networking_config={network: client.api.create_endpoint_config(aliases=[host])},
        detach=True,
        **kwargs,
    )


def start_registry(client: Any, lab: str, image: str, network: str, password: str, seed: Path | None = None,
                   bind: str | None = None) -> Any:
    """The lab's registry: :5000 on the lab network, and on a free 127.0.0.1 port for the host
    (and on a free port of address ``bind`` too: the VM lab's bridge address, for its VMs).

    ``seed``: a tarball of another lab registry's storage holding the same stand-in images;
    unpacking it costs seconds where pushing costs minutes of gzip on a busy machine.
    """
    container = _support(
        client,
        lab,
        "registry",
        image,
        network,
        command=["docker-registry", "serve", f"{CONF}/registry.yml"],
        ports={"5000/tcp": [("127.0.0.1", None), *([(bind, None)] if bind else [])]},
    )
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
    files = {f"{CONF}/registry.yml": (REGISTRY_YML, 0o644), f"{CONF}/htpasswd": (f"{REGISTRY_USER}:{hashed}\n", 0o644)}
    container.put_archive("/", text_tar(files))
    if seed is not None:
        with open(seed, "rb") as fh:
            container.put_archive("/var/lib", fh)
    with docker_lock(f"start {container.name}"):  # joins the lab network
        container.start()
    return container


def save_registry(container: Any, out: Path) -> None:
    """Snapshot the registry's storage (after the stand-ins were pushed) for the next labs."""
    stream, _ = container.get_archive("/var/lib/docker-registry")
    part = out.with_name(out.name + f".{os.getpid()}.part")
    with open(part, "wb") as fh:
        for chunk in stream:
            fh.write(chunk)
    part.rename(out)


def published_port(container: Any, port: str = "5000/tcp") -> int:
    """The host port docker picked for a published container port."""
    for _ in range(50):
        container.reload()
        bindings = container.attrs["NetworkSettings"]["Ports"].get(port)
        if bindings:
            return int(bindings[0]["HostPort"])
        time.sleep(0.1)
    raise RuntimeError(f"{container.name}: port {port} was not published")


def start_acme(client: Any, lab: str, image: str, network: str, hub_ip: str) -> Any:
    """The ACME container, started but waiting for its certificate (see give_acme_cert)."""
    container = _support(
        client,
        lab,
        "acme",
        image,
        network,
        command=["sh", "-c", ACME_CMD],
        environment={"HUB_IP": hub_ip, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"},
    )
    with docker_lock(f"start {container.name}"):  # joins the lab network
        container.start()
    return container


def self_signed(address: str, cert_path: Path, key_path: Path) -> None:
    """A TLS cert for pebble's API valid for its lab IP, 'acme' and localhost."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hubwizard lab acme")])
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("acme"),
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address(address)),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    write_private(key_path, pem)


def give_acme_cert(container: Any, cert_path: Path, key_path: Path) -> None:
    """Copy pebble's cert, key and config in and let it start."""
    files = {
        f"{CONF}/cert.pem": (cert_path.read_text(), 0o644),
        f"{CONF}/key.pem": (key_path.read_text(), 0o600),
        f"{CONF}/pebble.json": (json.dumps(PEBBLE_JSON, indent=2), 0o644),
    }
    container.put_archive("/", text_tar(files))
    container.put_archive("/", text_tar({f"{CONF}/go": ("", 0o644)}))


def fetch_pebble_root(address: str, ca_cert: Path, out: Path, timeout: float = 30.0) -> None:
    """Save the root that issues lab certificates (what a TLS check on the hub must trust)."""
    ctx = ssl.create_default_context(cafile=str(ca_cert))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"https://{address}:15000/roots/0", context=ctx, timeout=5) as resp:
                out.write_bytes(resp.read())
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"pebble at {address}:15000 does not answer: {exc}") from exc
            time.sleep(0.3)


def wait_registry(port: int, timeout: float = 30.0) -> None:
    """Wait until the registry answers (401 without credentials is an answer)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=3)
            return
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the lab registry on 127.0.0.1:{port} does not answer")
        time.sleep(0.2)


def push(client: Any, local_tag: str, port: int, repo: str, tag: str, password: str) -> None:
    """Push a locally built image to the lab registry as repo:tag through its host port."""
    target = f"127.0.0.1:{port}/{repo}"
    client.images.get(local_tag).tag(target, tag)
    try:
        auth = {"username": REGISTRY_USER, "password": password}
        for chunk in client.images.push(target, tag, auth_config=auth, stream=True, decode=True):
            if "error" in chunk:
                raise RuntimeError(f"pushing {repo}:{tag} to the lab registry failed: {chunk['error']}")
    finally:
        client.images.remove(f"{target}:{tag}", noprune=True)


def start_oidc(
    client: Any, lab: str, image: str, network: str, client_secret: str, redirect_uri: str, n_students: int = 2
) -> Any:
    """The lab's OpenID Connect provider on :9400 of the lab network (host and hub reach it).

    Its config (the hub's client secret inside) goes in as a 0600 file before it starts.
    """
    container = _support(client, lab, "oidc", image, network)
    conf = lab_oidc.provider_config(client_secret, redirect_uri, n_students)
    container.put_archive("/", text_tar({lab_oidc.CONF_FILE: (conf, 0o600)}))
    with docker_lock(f"start {container.name}"):  # joins the lab network
        container.start()
    return container


def wait_oidc(address: str, timeout: float = 60.0) -> None:
    """Wait until the provider serves its discovery document (uvicorn takes a few seconds)."""
    url = lab_oidc.base_url(address) + "/.well-known/openid-configuration"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                if resp.status == 200:
                    return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the lab's OpenID provider at {url} does not answer: {exc}") from exc
        time.sleep(0.3)
