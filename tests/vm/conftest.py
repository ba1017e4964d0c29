"""The VM lab for the `vm` tests: one `lab up --vm` (hub + 2 nodes, qemu TCG), always brought down.

Why opt-in ($HUBWIZARD_VM_TESTS=1, set by scripts/vm-lab-test.sh): TCG emulation on a 2-core
machine takes minutes per boot and per step, more than the main CI run can give; the script
runs these tests alone and RELIABILITY.md records their figures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.lab_fixture import unique_name


def hubwizard(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user does; output kept for the assertion message."""
    return subprocess.run(["hubwizard", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def vm_enabled() -> None:
    if os.environ.get("HUBWIZARD_VM_TESTS") != "1":
        pytest.skip("VM lab tests are opt-in: run scripts/vm-lab-test.sh (qemu TCG takes minutes)")
    if not shutil.which("qemu-system-x86_64") or not list(Path("/boot").glob("vmlinuz-*-cloud-amd64")):
        pytest.skip("needs qemu and Debian's cloud kernel: apt-get install qemu-system-x86 qemu-utils linux-image-cloud-amd64")


@pytest.fixture(scope="session")
def vm_lab(vm_enabled: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A fresh 1+2 VM lab, always brought down; or, with $HUBWIZARD_VM_LAB=NAME, that running VM
    lab (its own site file), left up: to rerun some tests (-k) without minutes of boot."""
    yield from vm_lab_up(tmp_path_factory, "vm", ["--nodes", "2"], "HUBWIZARD_VM_LAB")


def vm_lab_up(tmp_path_factory: pytest.TempPathFactory, prefix: str, up_args: list[str], reuse_env: str) -> Iterator[dict]:
    """`lab up --vm UP_ARGS` under a fresh name (PREFIX-...), yielded as {name, site, record,
    up_output}, always brought down; with $REUSE_ENV=NAME, that running VM lab, left up."""
    from hubwizard.lab.spec import load_record

    reuse = os.environ.get(reuse_env)
    if reuse:
        record = load_record(reuse)
        assert record is not None and record.get("kind") == "vm", f"no VM lab named {reuse!r}"
        yield {"name": reuse, "site": Path(record["site_path"]), "record": record, "up_output": ""}
        return
    name = unique_name(prefix)
    site = tmp_path_factory.mktemp(prefix) / f"{name}.toml"
    try:
        up = hubwizard("lab", "up", "--vm", "--name", name, *up_args, "-o", str(site))
        assert up.returncode == 0, f"lab up --vm failed:\n{up.stdout}\n{up.stderr}"
        record = load_record(name)
        assert record is not None
        print(up.stdout)
        print("timings:", json.dumps(record.get("timings")))
        yield {"name": name, "site": site, "record": record, "up_output": up.stdout}
    finally:
        hubwizard("lab", "down", "--name", name, timeout=300)
