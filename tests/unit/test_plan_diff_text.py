"""plan --diff's pure parts: the unified diff, and secrets never shown."""

from __future__ import annotations

from hubwizard.cli.report import diff_text
from hubwizard.core.redact import Redactor
from hubwizard.engine.diff import WITHHELD, file_diff, unified


def test_an_unchanged_file_has_no_diff():
    assert file_diff("s", "hub", "/etc/x", 0o644, "a\n", "a\n", Redactor()) is None


def test_a_missing_file_diffs_against_empty():
    text = unified("/etc/x", "hub", "", "one\ntwo\n")
    assert "+one\n+two\n" in text and "hub:/etc/x (now)" in text


def test_a_file_holding_a_secret_is_withheld_whichever_side_holds_it():
    red = Redactor(["s3cret-value"])
    for old, new in (("pw = s3cret-value\n", "pw = other\n"), ("x\n", "token = s3cret-value\n")):
        d = file_diff("s", "hub", "/etc/x", 0o644, old, new, red)
        assert d is not None and d.withheld == WITHHELD and d.diff == ""
        assert "s3cret" not in diff_text([d])


def test_a_private_file_is_withheld():
    d = file_diff("s", "hub", "/etc/key", 0o600, "a\n", "b\n", Redactor())
    assert d is not None and d.withheld == WITHHELD


def test_diff_text_names_host_path_and_step():
    d = file_diff("docker", "node1", "/etc/docker/daemon.json", 0o644, "a\n", "b\n", Redactor())
    text = diff_text([d])
    assert "== diff node1: /etc/docker/daemon.json  (step docker)" in text and "-a" in text and "+b" in text
    assert diff_text([]).strip() == "diff: no file would change"
