"""What a lab is (its shape, name, state directory and record), shared by the lab modules.

Why a module of its own: `lab up` (lab_create), `lab down`/`status` (lab) and the tests all
need the same names for the same things, without importing one another's machinery.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from hubwizard.core.errors import ConfigError, HubwizardError
from hubwizard.lab import images as lab_images
from hubwizard.lab.site import write_private

Progress = Callable[[str], None]
STAND_INS = (("jupyterhub", "lab/jupyterhub", "5"), ("singleuser", "lab/singleuser", "latest"))


class LabError(HubwizardError):
    """The lab could not be brought up, inspected or removed."""

    title = "lab failed"


class NoEngineError(LabError):
    """No Docker engine answers: the lab cannot run at all."""


@dataclass(frozen=True)
class LabSpec:
    """The shape of a lab: what `lab up` was asked for (compared when a lab is already up)."""

    name: str = "lab"
    nodes: int = 2
    spares: int = 0
    nfs_host: bool = False  # a machine "nfs" serves the users' folders (storage.server), not the hub
    user: str = "root"
    sudo_password: bool = False
    ssh_port: int = 22
    jump: bool = False
    with_docker: bool = False
    base_image: str | None = None
    dummy_login: bool = False  # the open dummy login instead of the lab's OpenID provider
    students: int = 2  # student1..studentN at the lab's OpenID provider, allowed on the hub

    def shape(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def hosts(self) -> list[tuple[str, str]]:
        """(host name, role) of every machine, hub first."""
        return (
            [("hub", "hub")]
            + [(f"node{i}", "node") for i in range(1, self.nodes + 1)]
            + [(f"spare{i}", "spare") for i in range(1, self.spares + 1)]
            + ([("nfs", "nfs")] if self.nfs_host else [])
        )


def state_dir(name: str) -> Path:
    """Keys, known_hosts, pebble certs and the record of one lab."""
    return lab_images.home() / "lab" / name


def network_name(name: str) -> str:
    return f"hwlab-{name}"


def save_record(record: dict) -> None:
    """The lab's record (0600: it holds the secrets so a reused lab can rewrite its files)."""
    path = state_dir(record["name"]) / "lab.json"
    write_private(path, json.dumps(record, indent=2) + "\n")


def load_record(name: str) -> dict | None:
    try:
        return json.loads((state_dir(name) / "lab.json").read_text())
    except (OSError, ValueError):
        return None


def validate_name(name: str) -> None:
    """Lab names end up in container, network and site names: same rule as site names."""
    import re

    if not re.fullmatch(r"[a-z][a-z0-9-]{0,23}", name):
        raise ConfigError(f"--name {name!r}: use lowercase letters, digits and '-', starting with a letter (max 24)")
