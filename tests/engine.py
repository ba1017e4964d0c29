"""Whether a Docker engine answers here: lab tests skip cleanly without one."""

from __future__ import annotations

import shutil
import subprocess


def docker_answers() -> bool:
    """`docker info` succeeds within 20 s."""
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
