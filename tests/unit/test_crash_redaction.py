"""A crash leaves a log in /tmp and a line on stderr: neither carries a secret (issue 12, Low).

The secrets come from a real secrets file, a prompt and the run itself (a join token); the
crash is a real exception raised with them in its message and handled by the CLI's one error
path (cli.main._report_error), which writes the log."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hubwizard.cli import main as cli
from hubwizard.core.redact import MASK
from hubwizard.core.secrets import load_secrets, write_secrets

FILE_SECRET = "file-secret-4c1d9e"
PROMPTED = "typed-sudo-pw-77aa"
TOKEN = "SWMTKN-1-" + "a" * 50 + "-" + "b" * 25


def _crash(secrets_owner: object, as_json: bool) -> int:
    try:
        raise RuntimeError(f"boom: password={FILE_SECRET} sudo={PROMPTED} token={TOKEN}")
    except RuntimeError as exc:
        return cli._report_error(exc, as_json)


def _log_path(text: str) -> Path:
    found = re.search(r"details were written to (\S+\.log)", text)
    assert found, text
    return Path(found.group(1))


def test_crash_log_and_error_line_are_redacted(tmp_path, capsys):
    site = tmp_path / "site.toml"
    site.write_text("")
    write_secrets(site, {"registry_password": FILE_SECRET})
    secrets = load_secrets(site, prompt=lambda name: PROMPTED)
    assert secrets.get("sudo_password") == PROMPTED  # typed at the prompt during the run
    assert _crash(secrets, False) == 1
    err = capsys.readouterr().err
    log = _log_path(err)
    try:
        text = log.read_text()
        assert "RuntimeError: boom" in text and MASK in text  # the log still says what happened
        for secret in (FILE_SECRET, PROMPTED, TOKEN):
            assert secret not in text and secret not in err
    finally:
        log.unlink()


def test_json_error_document_is_redacted(tmp_path, capsys):
    site = tmp_path / "site.toml"
    site.write_text("")
    write_secrets(site, {"registry_password": FILE_SECRET})
    secrets = load_secrets(site, prompt=lambda name: PROMPTED)
    secrets.get("sudo_password")
    _crash(secrets, True)
    doc = json.loads(capsys.readouterr().out)
    _log_path(doc["fix"]).unlink()
    assert FILE_SECRET not in json.dumps(doc) and PROMPTED not in json.dumps(doc) and MASK in doc["message"]
