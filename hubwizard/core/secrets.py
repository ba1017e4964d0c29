"""Secrets live apart from the site file: a 0600 TOML file beside it, env vars, or a prompt.

They are held in memory only, and every value is registered with the redactor so no
log line, journal entry or event can carry it.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hubwizard.core.errors import ConfigError
from hubwizard.core.redact import watch

KNOWN = ("oauth_client_secret", "registry_password", "registry_pull_password", "sudo_password", "hub_api_token",
         "hub_users_token", "backup_password", "backup_s3_secret_key")


def secrets_path(site_path: str | Path) -> Path:
    """``site.toml`` -> ``site.secrets.toml`` beside it."""
    p = Path(site_path)
    return p.with_name(p.stem + ".secrets.toml")


@dataclass
class Secrets:
    """Secret values by name, plus runtime ones (join tokens) added as they appear."""

    values: dict[str, str] = field(default_factory=dict)
    prompt: Callable[[str], str] | None = None
    path: Path | None = None  # the secrets file, for secrets generated at run time (hub_api_token)

    def __post_init__(self) -> None:
        watch(self.all_values)  # a crash log is masked with these values too (redact.redact_known)

    def get(self, name: str, *, required: bool = True) -> str | None:
        if name in self.values:
            return self.values[name]
        env = os.environ.get("HUBWIZARD_" + name.upper())
        if env:
            self.values[name] = env
            return env
        if self.prompt is not None and required:
            value = self.prompt(name)
            if value:
                self.values[name] = value
                return value
        if required:
            raise ConfigError(
                f"secret {name!r} is needed but not set",
                fix=f"put {name} = \"...\" in the secrets file (mode 0600), or set HUBWIZARD_{name.upper()}",
            )
        return None

    def add_runtime(self, name: str, value: str) -> None:
        """A secret learnt during a run (e.g. a swarm join token): redact it from now on."""
        self.values[name] = value

    def all_values(self) -> list[str]:
        return [v for v in self.values.values() if v]


def load_secrets(site_path: str | Path, prompt: Callable[[str], str] | None = None) -> Secrets:
    """Read the secrets file beside the site file, refusing one others can read."""
    path = secrets_path(site_path)
    values: dict[str, str] = {}
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"{path}: secrets file is readable by others (mode {mode:o})",
                fix=f"chmod 600 {path}",
            )
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        for key, value in data.items():
            if key not in KNOWN:
                raise ConfigError(f"{path}: unknown secret {key!r}", fix=f"known secrets: {', '.join(KNOWN)}")
            if not isinstance(value, str):
                raise ConfigError(f"{path}: {key} must be a string")
            values[key] = value
    return Secrets(values=values, prompt=prompt, path=path)


def write_secrets(site_path: str | Path, values: dict[str, str]) -> Path:
    """Write (or update) the secrets file with mode 0600 from its first byte."""
    path = secrets_path(site_path)
    current: dict[str, str] = {}
    if path.exists():
        current = tomllib.loads(path.read_text(encoding="utf-8"))
    current.update(values)
    body = "".join(f"{k} = {_toml_str(v)}\n" for k, v in sorted(current.items()))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(body)
    os.chmod(path, 0o600)
    return path


def _toml_str(value: str) -> str:
    import json

    return json.dumps(value)  # a JSON string is a valid TOML basic string


def made_once(secrets: Secrets, name: str, make: Callable[[], str], *, create: bool) -> str | None:
    """A secret hubwizard generates itself (an API token, a password): from the store, else made
    by ``make`` once (with ``create``), kept for this run and saved to the site's secrets file."""
    value = secrets.get(name, required=False)
    if value or not create:
        return value
    value = make()
    secrets.add_runtime(name, value)
    path = getattr(secrets, "path", None)
    if path is not None:
        write_secrets(Path(path).with_name(Path(path).name.removesuffix(".secrets.toml") + ".toml"), {name: value})
    return value
