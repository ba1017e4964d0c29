"""The classic track's Docker TLS material: CA, server certs with IP SANs, client cert."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import stat
import threading

import pytest
from cryptography import x509

from hubwizard.actions import tls


@pytest.fixture
def ca(tmp_path):
    authority = tls.SiteCA(tmp_path / "tls", "workshop")
    assert authority.ensure() is True
    return authority


def test_ca_key_is_private_and_ca_is_reused(ca):
    assert stat.S_IMODE(ca.key_path.stat().st_mode) == 0o600
    first = ca.cert_path.read_bytes()
    assert ca.ensure() is False
    assert ca.cert_path.read_bytes() == first
    cert = x509.load_pem_x509_certificate(first)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


def test_server_cert_has_the_hosts_ips_and_is_signed_by_the_ca(ca):
    files = tls.leaf(ca, "node1", ips=["10.0.0.11", "127.0.0.1"], dns=["node1"])
    ips, names = tls.san_entries(files.cert)
    assert set(ips) == {"10.0.0.11", "127.0.0.1"} and names == ["node1"]
    assert tls.verify_signed_by(files.cert, files.ca)
    assert stat.S_IMODE((ca.folder / "node1-key.pem").stat().st_mode) == 0o600
    assert b"PRIVATE KEY" not in files.cert and b"PRIVATE KEY" in files.key
    assert 800 < tls.days_left(files.cert) <= tls.CERT_DAYS


def test_leaf_is_kept_until_a_san_is_missing(ca):
    a = tls.leaf(ca, "hub", ips=["10.0.0.10"])
    assert tls.leaf(ca, "hub", ips=["10.0.0.10"]).cert == a.cert
    b = tls.leaf(ca, "hub", ips=["10.0.0.10", "10.0.0.99"])
    assert b.cert != a.cert and "10.0.0.99" in tls.san_entries(b.cert)[0]


def _usages(pem: bytes) -> set[str]:
    return {oid.dotted_string for oid in tls.key_usages(pem)}


SERVER_AUTH, CLIENT_AUTH = "1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"


def test_a_nodes_server_cert_cannot_act_as_a_client(ca):
    """Issue 12 item 5: root on a node must not drive the other engines with its own cert."""
    node = tls.leaf(ca, "node1", ips=["10.0.0.11"], dns=["node1"])
    assert _usages(node.cert) == {SERVER_AUTH}
    assert not tls.allows_client_auth(node.cert)
    ext = x509.load_pem_x509_certificate(node.cert).extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert ext.critical is False and len(ext.value) == 1


def test_only_the_hubs_client_and_manager_certs_allow_client_auth(ca):
    client = tls.leaf(ca, "client", role=tls.CLIENT)
    manager = tls.leaf(ca, "manager", ips=["10.0.0.10"], dns=["hub"], role=tls.MANAGER)
    assert _usages(client.cert) == {CLIENT_AUTH} and tls.allows_client_auth(client.cert)
    assert _usages(manager.cert) == {SERVER_AUTH, CLIENT_AUTH} and tls.allows_client_auth(manager.cert)
    assert tls.san_entries(manager.cert) == (["10.0.0.10"], ["hub"])


def test_an_older_server_cert_that_allowed_client_auth_is_issued_again(ca):
    """A site applied before the fix holds node certs with clientAuth: apply replaces them."""
    old = ca.issue("node1 docker", ips=["10.0.0.11"], role=tls.MANAGER)  # both usages, like before
    (ca.folder / "node1-cert.pem").write_bytes(old.cert)
    (ca.folder / "node1-key.pem").write_bytes(old.key)
    new = tls.leaf(ca, "node1", ips=["10.0.0.11"])
    assert new.cert != old.cert and _usages(new.cert) == {SERVER_AUTH}
    assert tls.leaf(ca, "node1", ips=["10.0.0.11"]).cert == new.cert  # and then kept


def test_a_cert_without_any_eku_counts_as_a_client(tmp_path):
    """Go accepts a client cert with no ExtendedKeyUsage at all: the check must say so."""
    import datetime as _dt

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bare")])
    now = _dt.datetime.now(_dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + _dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    assert tls.allows_client_auth(cert.public_bytes(serialization.Encoding.PEM))


def test_cert_of_another_ca_is_not_trusted(tmp_path, ca):
    other = tls.SiteCA(tmp_path / "other", "intruder")
    foreign = other.issue("node1 docker", ips=["10.0.0.11"])
    assert not tls.verify_signed_by(foreign.cert, ca.cert_path.read_bytes())


def test_days_left_counts_down(tmp_path):
    short = tls.SiteCA(tmp_path, "s").issue("x", ips=["10.0.0.1"], days=3)
    assert 2.9 < tls.days_left(short.cert) <= 3
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=10)
    assert tls.days_left(short.cert, now=later) < 0


def _serve_once(server_ctx: ssl.SSLContext, sock: socket.socket, outcome: dict) -> None:
    conn, _ = sock.accept()
    try:
        with server_ctx.wrap_socket(conn, server_side=True) as s:
            s.sendall(b"OK")
            outcome["served"] = True
    except (ssl.SSLError, OSError) as exc:
        outcome["error"] = str(exc)


def test_a_real_handshake_needs_the_client_cert(tmp_path, ca):
    """What dockerd with tlsverify does: a client without a cert of the CA is refused, and so is
    a client presenting another host's server cert (no clientAuth; OpenSSL checks it as Go does)."""
    server = tls.leaf(ca, "hub", ips=["127.0.0.1"])
    client = tls.leaf(ca, "client", role=tls.CLIENT)
    node = tls.leaf(ca, "node1", ips=["10.0.0.11"])
    for name, data in {"ca.pem": server.ca, "s.pem": server.cert, "s.key": server.key,
                       "c.pem": client.cert, "c.key": client.key, "n.pem": node.cert, "n.key": node.key}.items():
        (tmp_path / name).write_bytes(data)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "s.pem", tmp_path / "s.key")
    server_ctx.load_verify_locations(tmp_path / "ca.pem")
    server_ctx.verify_mode = ssl.CERT_REQUIRED

    def attempt(with_cert: bool | str) -> tuple[bool, dict]:
        sock = socket.create_server(("127.0.0.1", 0))
        outcome: dict = {}
        t = threading.Thread(target=_serve_once, args=(server_ctx, sock, outcome))
        t.start()
        ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        if with_cert:
            prefix = with_cert if isinstance(with_cert, str) else "c"
            ctx.load_cert_chain(tmp_path / f"{prefix}.pem", tmp_path / f"{prefix}.key")
        got = False
        try:
            with socket.create_connection(sock.getsockname(), timeout=5) as raw, \
                    ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                got = s.recv(2) == b"OK"
        except (ssl.SSLError, OSError):
            got = False
        t.join(5)
        sock.close()
        return got, outcome

    ok, outcome = attempt(True)
    assert ok and outcome.get("served")
    refused, outcome = attempt(False)
    assert not refused and "served" not in outcome
    refused, outcome = attempt("n")  # node1's own server cert and key, used as a client
    assert not refused and "served" not in outcome
    assert "certificate purpose" in outcome.get("error", ""), outcome
