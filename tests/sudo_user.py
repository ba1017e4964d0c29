"""A real local user whose sudo asks for a password, logging in with a test key (tests only)."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def password_sudoer(name: str, pubkey: Path, *, nopasswd: bool = False) -> Iterator[tuple[str, str]]:
    """Create ``name`` with a random password and a sudoers entry that asks for it (``nopasswd``: that
    never asks, though the user has a password the site may still name); remove both after."""
    if not shutil.which("sudo") or not shutil.which("useradd"):
        pytest.skip("sudo and useradd are needed (scripts/setup.sh installs them)")
    password = "pw-" + secrets.token_urlsafe(12)
    subprocess.run(["userdel", "-f", "-r", name], capture_output=True)
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True)
    subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
    ssh_dir = Path(f"/home/{name}/.ssh")
    ssh_dir.mkdir(parents=True, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(pubkey.read_text())
    subprocess.run(["chown", "-R", f"{name}:{name}", str(ssh_dir)], check=True)
    sudoers = Path(f"/etc/sudoers.d/{name}-test")
    sudoers.parent.mkdir(exist_ok=True)
    sudoers.write_text(f"{name} ALL=(ALL) {'NOPASSWD: ' if nopasswd else ''}ALL\n")
    sudoers.chmod(0o440)
    try:
        yield name, password
    finally:
        sudoers.unlink(missing_ok=True)
        subprocess.run(["userdel", "-f", "-r", name], capture_output=True)
