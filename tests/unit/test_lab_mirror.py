"""The lab's Debian mirror and Python index come from this machine's configuration (issue 14
item 15): apt sources in both formats, `lab up --mirror`, pip's own settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hubwizard.lab import images, mirror

ONE_LINE = """\
# the local mirror of our institute
deb http://mirror.example.net/debian bookworm main contrib
deb-src http://mirror.example.net/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://mirror.example.net/debian bookworm-updates main
deb http://security.example.net/debian-security bookworm-security main  # security
"""

DEB822 = """\
Types: deb
# http://snapshot.example.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.net/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.example.net/debian
Suites: bookworm

Types: deb
URIs: http://old.example.net/debian
Suites: bookworm
Enabled: no

Types: deb
URIs:
 http://security.example.net/debian-security
Suites: bookworm-security
Components: main
"""

WANT = mirror.Mirror("http://mirror.example.net/debian", "http://security.example.net/debian-security")


def test_one_line_format():
    sources = mirror.parse_one_line(ONE_LINE)
    assert [s.uri for s in sources] == ["http://mirror.example.net/debian"] * 2 + ["http://security.example.net/debian-security"]
    assert sources[1].suites == ("bookworm-updates",)  # the [options] are skipped
    assert mirror.choose(sources) == WANT


def test_deb822_format():
    sources = mirror.parse_deb822(DEB822)  # deb-src and Enabled: no left out; a continuation line read
    assert [(s.uri, s.suites) for s in sources] == [
        ("http://mirror.example.net/debian", ("bookworm", "bookworm-updates")),
        ("http://security.example.net/debian-security", ("bookworm-security",))]
    assert mirror.choose(sources) == WANT


def test_the_machines_files_are_read_in_apts_order(tmp_path):
    apt = tmp_path / "etc/apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list").write_text("# nothing here\n")
    (apt / "sources.list.d/debian.sources").write_text(DEB822)
    (apt / "sources.list.d/other.list").write_text("deb http://third.example.net/debian bookworm main\n")
    (apt / "sources.list.d/x.disabled").write_text("deb http://never.example.net/debian bookworm main\n")
    found = mirror.host_sources(tmp_path)
    assert [s.uri for s in found][0] == "http://mirror.example.net/debian"
    assert "http://never.example.net/debian" not in [s.uri for s in found]


def test_mirror_option_wins_and_the_images_use_it(tmp_path, monkeypatch):
    monkeypatch.setenv(mirror.MIRROR_ENV, "http://apt-cache.internal:3142/debian/")
    assert images.MIRROR == "http://apt-cache.internal:3142/debian"
    assert images.SOURCES_LIST.splitlines() == [
        "deb http://apt-cache.internal:3142/debian bookworm main",
        "deb http://apt-cache.internal:3142/debian bookworm-updates main",
        "deb http://apt-cache.internal:3142/debian-security bookworm-security main"]
    other = images.base_hash()
    monkeypatch.setenv(mirror.MIRROR_ENV, "http://elsewhere.internal/debian")
    assert images.base_hash() != other  # another mirror is another base image


def test_no_mirror_anywhere_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv(mirror.MIRROR_ENV, raising=False)
    with pytest.raises(mirror.NoMirror, match="--mirror"):
        mirror.resolve(tmp_path)


def test_pip_settings_reach_the_images_only_when_an_http_index_is_set(monkeypatch):
    assert mirror.pip_env({"extra-index-url": "file:///opt/pypi/simple", "find-links": "/opt/wheels"}) == {}
    env = mirror.pip_env({"index-url": "https://pypi.internal/simple", "PIP_TRUSTED_HOST": "pypi.internal"})
    assert env == {"PIP_INDEX_URL": "https://pypi.internal/simple", "PIP_TRUSTED_HOST": "pypi.internal"}
    monkeypatch.setattr(mirror, "_pip_config", lambda: {"PIP_INDEX_URL": "http://127.0.0.1:3141/root/pypi/+simple/"})
    context = images._context(images.RECIPES["jupyterhub"], "parent:tag")
    import tarfile

    with tarfile.open(fileobj=context) as tar:
        dockerfile = tar.extractfile("Dockerfile").read().decode()
    assert dockerfile.splitlines()[:2] == ["FROM parent:tag", 'ENV PIP_INDEX_URL="http://127.0.0.1:3141/root/pypi/+simple/"']


def test_no_host_name_in_the_lab_code():
    lab = Path(images.__file__).parent
    for f in lab.glob("*.py"):
        text = f.read_text()
        assert "deb.debian.org" not in text and "pypi.org" not in text, f


def test_lab_up_refuses_a_mirror_that_is_not_a_url():
    res = subprocess.run([sys.executable, "-m", "hubwizard.cli.main", "lab", "up", "--name", "mirrorcheck",
                          "--mirror", "ftp.example.net/debian"], capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 2 and "--mirror" in res.stderr
