"""Preflight and version probes: pure parsing, and the probes run for real on this machine."""

from __future__ import annotations

import pytest

from hubwizard.actions import probes
from hubwizard.core.config import parse_site
from hubwizard.core.events import discard
from hubwizard.core.render import Facts
from hubwizard.core.secrets import Secrets
from hubwizard.engine.calls import RunState, StepContext
from hubwizard.remote.transport import LocalTransport

SITE = """
[site]
name = "t"
domain = "hub.example.org"
email = "a@example.org"
[[hosts]]
name = "hub"
address = "127.0.0.1"
role = "hub"
[[hosts]]
name = "node1"
address = "127.0.0.2"
role = "node"
[storage]
path = "/var/tmp/hubwizard-test-nfs"
[quotas]
enabled = true

[oauth]
provider = "dummy"  # a test site: anyone may log in
i_understand_anyone_can_log_in = true
"""


@pytest.mark.parametrize(
    ("have", "want", "ok"),
    [
        ("20.10.24+dfsg1", "20.10", True),
        ("20.10", "20.10.0", True),
        ("19.03.15", "20.10", False),
        ("9.0", "10.0", False),  # numeric, not string, comparison
        ("28.2.2", "20.10", True),
        ("v24.0.7", "24.0.7", True),
        ("20.10.23", "20.10.24", False),
    ],
)
def test_version_at_least(have, want, ok):
    assert probes.version_at_least(have, want) is ok


def test_version_rejects_garbage():
    with pytest.raises(ValueError):
        probes.version_tuple("unknown")


def test_parse_os_release():
    text = 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID="22.04"\n# comment\n'
    osr = probes.parse_os_release(text)
    assert osr == {"PRETTY_NAME": "Ubuntu 22.04.4 LTS", "ID": "ubuntu", "ID_LIKE": "debian", "VERSION_ID": "22.04"}


def _ctx(host: str = "hub") -> StepContext:
    site = parse_site(SITE)
    facts = Facts(hub_ip="127.0.0.1", subnet="127.0.0.0/8", ips={"hub": "127.0.0.1", "node1": "127.0.0.1"},
                  nfs_ip="127.0.0.1")
    return StepContext("preflight", site.host(host), LocalTransport(host), site, facts, Secrets(), RunState(), discard)


def test_os_probe_on_this_machine():
    res = probes.preflight_os(_ctx())
    assert res.ok, res.message  # the build machine is Debian on x86_64
    assert "x86_64" in res.message or "aarch64" in res.message


def test_resources_probe_reports_numbers():
    res = probes.preflight_resources(_ctx())
    assert res.ok, res.message
    assert "CPU" in res.message and "GiB memory" in res.message and "free on" in res.message


def test_clock_of_this_machine_has_no_skew():
    skew, err = probes.clock_skew(_ctx())
    assert abs(skew) <= err + 0.5
    assert probes.preflight_clock(_ctx()).ok


def test_access_probe_as_root():
    res = probes.preflight_access(_ctx())
    assert res.ok and "root" in res.message


def test_quota_support_names_every_missing_piece_here():
    """This machine's kernel lacks XFS quotas and /var/tmp is not XFS: both must be said."""
    res = probes.quota_support(_ctx())
    if res.ok:  # pragma: no cover - a machine with XFS pquota on /var/tmp
        pytest.skip("this machine has XFS project quotas on /var/tmp")
    assert "XFS project quotas unavailable" in res.message
    assert "not XFS" in res.message or "without project quotas" in res.message
    if probes.kernel_config_value(_ctx(), "CONFIG_XFS_QUOTA") == "n":
        assert "CONFIG_XFS_QUOTA is not set" in res.message


@pytest.fixture
def xfs_mount(tmp_path):
    """A real XFS filesystem (loop device) mounted without quotas; skipped where that cannot be done."""
    import os
    import shutil
    import subprocess

    if os.geteuid() != 0 or not shutil.which("mkfs.xfs"):
        pytest.skip("needs root and xfsprogs")
    image, mnt = tmp_path / "xfs.img", tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["truncate", "-s", "320M", str(image)], check=True)
    subprocess.run(["mkfs.xfs", "-q", str(image)], check=True)
    if subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a loop device here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_quota_support_on_xfs_without_pquota(xfs_mount):
    """XFS, but mounted without project quotas: say so, with the fstab fix (and the kernel, if it lacks them)."""
    ctx = _ctx()
    site = parse_site(SITE.replace("/var/tmp/hubwizard-test-nfs", f"{xfs_mount}/nfs"))
    ctx = StepContext("quotas", site.host("hub"), ctx.transport, site, ctx.facts, Secrets(), RunState(), discard)
    res = probes.quota_support(ctx)
    assert not res.ok
    assert f"{xfs_mount} (XFS) is mounted without project quotas" in res.message
    assert "add pquota to the options" in res.message and "not XFS" not in res.message


def _storage_ctx(implementation: str, path: str = "/var/tmp") -> StepContext:
    site = parse_site(SITE.replace('path = "/var/tmp/hubwizard-test-nfs"',
                                   f'path = "{path}"\nimplementation = "{implementation}"'))
    base = _ctx()
    return StepContext("storage", site.host("hub"), base.transport, site, base.facts, Secrets(), RunState(), discard)


def _has_nfsd() -> bool:
    import subprocess

    return subprocess.run("grep -qw nfsd /proc/filesystems || [ -n \"$(ls -A /proc/fs/nfsd 2>/dev/null)\" ] || "
                          "find /lib/modules/$(uname -r) -name 'nfsd.ko*' 2>/dev/null | grep -q .",
                          shell=True, capture_output=True).returncode == 0


def test_nfs_implementation_auto_follows_the_kernel():
    ctx = _storage_ctx("auto")
    res = probes.nfs_implementation(ctx)
    assert res.ok, res.message
    want = "kernel" if _has_nfsd() else "ganesha"
    assert ctx.state.data["nfs_impl"] == want and res.message.startswith(want)


def test_nfs_implementation_kernel_forced_without_nfsd_fails():
    if _has_nfsd():  # pragma: no cover - a machine with kernel NFS
        pytest.skip("this kernel has nfsd")
    res = probes.nfs_implementation(_storage_ctx("kernel"))
    assert not res.ok and "has no NFS server" in res.message


def test_nfs_storage_on_overlayfs_is_refused():
    import subprocess

    fs = subprocess.run(["stat", "-f", "-c", "%T", "/"], capture_output=True, text=True).stdout.strip()
    if fs not in probes.UNEXPORTABLE_FS:
        pytest.skip(f"/ is {fs} here, not an overlay")
    res = probes.nfs_implementation(_storage_ctx("auto", "/srv/hubwizard-nfs-test"))
    assert not res.ok and "which NFS cannot export" in res.message
