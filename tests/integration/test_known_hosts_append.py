"""Accepting a new host key appends one line to known_hosts and keeps the rest of the file as it
was: comments, @cert-authority and @revoked lines, hashed entries (issue 12, Low). paramiko's
HostKeys.save() rewrote the whole file from what it could parse. Real sshd, real file."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hubwizard.remote.transport import HostKeyPolicy, SshTarget, SshTransport
from tests.sshd import known_hosts_line


def _pub(tmp_path, name: str) -> str:
    from tests.sshd import keygen

    return " ".join(Path(f"{keygen(tmp_path / name)}.pub").read_text().split()[:2])


def _admin_file(tmp_path) -> str:
    """Comments, a CA, a revoked key, a hashed entry, and no newline at the end."""
    hashed = tmp_path / "hashed"
    hashed.write_text(f"other.example.org {_pub(tmp_path, 'k3')}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(hashed)], check=True, capture_output=True)
    return (
        "# the admin's own notes: keep me\n"
        f"@cert-authority *.example.org {_pub(tmp_path, 'k1')}\n"
        f"@revoked * {_pub(tmp_path, 'k2')}\n"
        + hashed.read_text().strip()
    )


def test_new_key_appended_file_kept(ssh_env, tmp_path):
    s = ssh_env["servers"][0]
    kh = tmp_path / "known_hosts"
    admin = _admin_file(tmp_path)
    assert admin.splitlines()[-1].startswith("|1|")
    kh.write_text(admin)
    asked: list[str] = []

    def confirm(host: str, fp: str) -> bool:
        asked.append(host)
        return True

    target = SshTarget("h", "127.0.0.1", s.port, "root", (str(ssh_env["key"]),))
    t = SshTransport(target, HostKeyPolicy(kh, confirm))
    try:
        assert t.run("true").ok
    finally:
        t.close()
    text = kh.read_text()
    assert text == admin + "\n" + known_hosts_line(s)
    assert asked == [f"[127.0.0.1]:{s.port}"]
    # the next connection knows the key without asking; OpenSSH reads the file too
    t = SshTransport(target, HostKeyPolicy(kh, None))
    try:
        assert t.run("true").ok
    finally:
        t.close()
    found = subprocess.run(["ssh-keygen", "-F", f"[127.0.0.1]:{s.port}", "-f", str(kh)], capture_output=True,
                           text=True)
    assert found.returncode == 0 and s.host_pub.split()[1] in found.stdout


def test_revoked_key_refused(ssh_env, tmp_path):
    """A key the admin marked @revoked is refused even when confirmed, naming the mark."""
    import pytest

    from hubwizard.core.errors import HostKeyError

    s = ssh_env["servers"][0]
    kh = tmp_path / "known_hosts"
    kh.write_text(f"@revoked * {' '.join(s.host_pub.split()[:2])}\n")
    t = SshTransport(SshTarget("h", "127.0.0.1", s.port, "root", (str(ssh_env["key"]),)),
                     HostKeyPolicy(kh, lambda h, fp: True))
    try:
        with pytest.raises(HostKeyError) as err:
            t.run("true")
    finally:
        t.close()
    assert "@revoked" in str(err.value.message)
    assert kh.read_text().count("\n") == 1  # nothing appended
