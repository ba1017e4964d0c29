"""The journal survives torn writes and reports the last state per step and host."""

from __future__ import annotations

from hubwizard.core.journal import Journal


def test_torn_last_line_is_ignored(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    j.record("r1", "a", "hub", "started", "d1")
    j.record("r1", "a", "hub", "done", "d1")
    with (tmp_path / "j.jsonl").open("ab") as fh:
        fh.write(b'{"ts": 1, "run": "r2", "st')  # a crash mid-write
    assert [e.phase for e in j.entries()] == ["started", "done"]
    assert j.latest()[("a", "hub")].phase == "done"


def test_garbage_line_skipped(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    (tmp_path / "j.jsonl").write_text("not json\n")
    j.record("r", "s", "h", "failed")
    assert j.latest()[("s", "h")].phase == "failed"


def test_file_is_private(tmp_path):
    j = Journal(tmp_path / "x" / "j.jsonl")
    j.record("r", "s", "h", "done")
    assert (tmp_path / "x" / "j.jsonl").stat().st_mode & 0o077 == 0

