"""--json: every command's error is the same document on stdout (cli/main.py _report_error)."""

from __future__ import annotations

import json

import pytest

from hubwizard.cli import main as cli

KEYS = {"error", "message", "host", "step", "fix", "exit_code"}


@pytest.mark.parametrize("argv", [
    ["plan", "-c", "missing.toml", "--json"],                 # bad input: no site file
    ["status", "-c", "missing.toml", "--json"],
    ["lab", "status", "--name", "Bad Name", "--json"],       # the lab's errors too
    ["verify", "-c", "missing.toml", "--json", "--bogus"],  # a bad flag
])
def test_errors_are_one_json_document(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's error() exits
        code = exc.code
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert set(doc) == KEYS and doc["exit_code"] == code == 2 and doc["message"]


def test_a_step_failure_carries_host_step_and_fix(capsys):
    from hubwizard.core.errors import StepFailed

    exc = StepFailed(host="node1", step="docker", command="apt-get install -y docker.io", output_tail="E: no space",
                     fix="free space on node1")
    assert cli._report_error(exc, as_json=True) == 1
    doc = json.loads(capsys.readouterr().out)
    assert (doc["host"], doc["step"], doc["fix"], doc["error"]) == ("node1", "docker", "free space on node1", "step failed")


def test_without_json_errors_go_to_stderr_with_the_fix(capsys):
    from hubwizard.core.errors import ConfigError

    assert cli._report_error(ConfigError("site.toml: no such file", fix="run hubwizard init"), as_json=False) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "fix: run hubwizard init" in captured.err
