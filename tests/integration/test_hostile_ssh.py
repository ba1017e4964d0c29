"""Hostile values sent through the real SSH transport arrive as one literal argument."""

from __future__ import annotations

import pytest

from hubwizard.core.templating import render_command

HOSTILE = ["a;touch {m}", "$(touch {m})", "`touch {m}`", "a'b;touch {m}", 'a"b;touch {m}', "a\ntouch {m}",
           "a && touch {m}", "| touch {m}", "> {m}"]


@pytest.fixture
def transport(ssh_transport):
    return ssh_transport


@pytest.mark.parametrize("pattern", HOSTILE)
def test_no_marker_ever(transport, tmp_path, pattern):
    marker = tmp_path / "PWNED"
    value = pattern.format(m=marker)
    out = tmp_path / "out"
    res = transport.run(render_command("printf %s {{ v }} > {{ f }}", {"v": value, "f": str(out)}))
    assert res.ok, res.output
    assert out.read_text() == value
    assert not marker.exists()


def test_sudo_password_never_on_command_line(transport):
    from hubwizard.remote.transport import _sudo_wrap

    cmd, stdin = _sudo_wrap("id", "alice", True, "s3cret")
    assert "s3cret" not in cmd and stdin == "s3cret\n"


def test_streams_lines_and_files(transport, tmp_path):
    lines = []
    res = transport.run("printf 'a\\nb\\n'; echo err >&2", on_line=lambda s, line: lines.append((s, line)))
    assert res.ok and ("out", "a") in lines and ("out", "b") in lines and ("err", "err") in lines
    target = tmp_path / "sub" / "f.txt"
    transport.put(b"hello", str(target), mode=0o600)
    assert target.read_bytes() == b"hello" and (target.stat().st_mode & 0o777) == 0o600
    assert transport.get(str(target)) == b"hello"
