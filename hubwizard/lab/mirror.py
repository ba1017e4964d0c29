"""Where the lab's images get Debian packages and Python packages: from this machine's own
configuration, never from a host name written in the code.

Why: admins sit behind their own mirrors and proxies. The Debian mirror comes from `lab up
--mirror URL` ($HUBWIZARD_LAB_MIRROR), else from this machine's apt sources (one-line
/etc/apt/sources.list and *.list, and deb822 *.sources under /etc/apt/sources.list.d/). pip
inside the images uses this machine's pip configuration (PIP_INDEX_URL and friends, pip.conf)
when it names an index reachable over http(s).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"  # the lab's Debian release (images.DEBOOTSTRAP_ARGS)
MIRROR_ENV = "HUBWIZARD_LAB_MIRROR"


@dataclass(frozen=True)
class Source:
    """One apt source: a URI with its suites (deb lines only)."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...] = ()


@dataclass(frozen=True)
class Mirror:
    """The Debian archive and its security archive ("" when none is known)."""

    debian: str
    security: str = ""

    def sources_list(self, suite: str = SUITE) -> str:
        """The images' /etc/apt/sources.list."""
        lines = [f"deb {self.debian} {suite} main", f"deb {self.debian} {suite}-updates main"]
        if self.security:
            lines.append(f"deb {self.security} {suite}-security main")
        return "\n".join(lines) + "\n"


class NoMirror(RuntimeError):
    """No Debian mirror in the apt sources and none given."""


def parse_one_line(text: str) -> list[Source]:
    """sources.list format: ``deb [opts] URI SUITE [COMPONENT...]``; deb-src and comments ignored."""
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        words = line.split()[1:]
        if words and words[0].startswith("["):  # [arch=amd64 signed-by=...]
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = words[1:]
        if len(words) >= 2:
            out.append(Source(words[0], (words[1],), tuple(words[2:])))
    return out


def parse_deb822(text: str) -> list[Source]:
    """deb822 .sources format: paragraphs of ``Types/URIs/Suites/Components`` (``Enabled: no`` skipped)."""
    out = []
    for para in _paragraphs(text):
        if "deb" not in para.get("types", "").split() or para.get("enabled", "yes").lower() == "no":
            continue
        suites = tuple(para.get("suites", "").split())
        for uri in para.get("uris", "").split():
            out.append(Source(uri, suites, tuple(para.get("components", "").split())))
    return out


def _paragraphs(text: str) -> list[dict[str, str]]:
    paras: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if not raw.strip():
            if current:
                paras.append(current)
            current, key = {}, ""
            continue
        if raw[0] in " \t" and key:  # a continuation line
            current[key] += " " + raw.strip()
        elif ":" in raw:
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            current[key] = value.strip()
    if current:
        paras.append(current)
    return paras


def host_sources(root: Path = Path("/")) -> list[Source]:
    """Every deb source of this machine's apt configuration, in apt's reading order."""
    apt = root / "etc/apt"
    out = []
    if (apt / "sources.list").is_file():
        out += parse_one_line((apt / "sources.list").read_text(errors="replace"))
    folder = apt / "sources.list.d"
    for f in sorted(folder.glob("*")) if folder.is_dir() else []:
        if f.suffix == ".list":
            out += parse_one_line(f.read_text(errors="replace"))
        elif f.suffix == ".sources":
            out += parse_deb822(f.read_text(errors="replace"))
    return out


def choose(sources: list[Source], suite: str = SUITE) -> Mirror | None:
    """The archive serving ``suite`` (else the first whose path is .../debian) and its security archive."""
    def base(s: Source) -> bool:
        return any(x == suite or x == f"{suite}-updates" for x in s.suites)

    main = next((s.uri for s in sources if base(s)), None)
    main = main or next((s.uri for s in sources if s.uri.rstrip("/").endswith("/debian")), None)
    if main is None:
        return None
    security = next((s.uri for s in sources if any(x.endswith("-security") for x in s.suites)), "")
    return Mirror(main.rstrip("/"), security.rstrip("/"))


def from_url(url: str) -> Mirror:
    """`--mirror URL`: the archive; its security archive beside it when it follows Debian's layout."""
    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise NoMirror(f"--mirror {url!r}: give the archive's URL, e.g. http://HOST/debian")
    return Mirror(url, url + "-security" if url.endswith("/debian") else "")


def resolve(root: Path = Path("/")) -> Mirror:
    """The mirror the lab uses: --mirror ($HUBWIZARD_LAB_MIRROR) first, else this machine's apt sources."""
    given = os.environ.get(MIRROR_ENV, "").strip()
    if given:
        return from_url(given)
    found = choose(host_sources(root))
    if found is None:
        raise NoMirror("no Debian mirror in this machine's apt sources (/etc/apt/sources.list, "
                       "/etc/apt/sources.list.d/): give one with `hubwizard lab up --mirror URL`")
    return found


# ---------------------------------------------------------------- pip

_PIP_KEYS = {"index-url": "PIP_INDEX_URL", "extra-index-url": "PIP_EXTRA_INDEX_URL", "trusted-host": "PIP_TRUSTED_HOST"}


def pip_env(config: dict[str, str] | None = None) -> dict[str, str]:
    """The PIP_* variables for pip inside the images: this machine's index settings, keeping only
    indexes reachable over http(s) (a file:// index or a local folder is not inside a build)."""
    config = _pip_config() if config is None else config
    out = {}
    for key, var in _PIP_KEYS.items():
        value = config.get(var) or config.get(key) or ""
        if key != "trusted-host":
            value = " ".join(u for u in value.split() if u.startswith(("http://", "https://")))
        if value:
            out[var] = value
    return out


@functools.lru_cache(maxsize=1)
def _pip_files() -> tuple[tuple[str, str], ...]:
    """`pip config list` once per process (it starts a Python)."""
    try:
        listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                                timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        listed = ""
    out = []
    for line in listed.splitlines():
        name, _, value = line.partition("=")
        out.append((name.rpartition(".")[2], value.strip().strip("'\"")))
    return tuple(out)


def _pip_config() -> dict[str, str]:
    """pip's own view: `pip config list` (files) overlaid with PIP_* environment variables."""
    values = {k: v for k, v in _pip_files() if k in _PIP_KEYS}
    for var in _PIP_KEYS.values():
        if os.environ.get(var):
            values[var] = os.environ[var]
    return values


def dockerfile_env(env: dict[str, str]) -> str:
    """ENV lines for a Dockerfile (empty when there is nothing to set)."""
    return "".join(f"ENV {k}={_quoted(v)}\n" for k, v in sorted(env.items()))


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
