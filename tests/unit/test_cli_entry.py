"""The CLI contract's entry forms: `hubwizard [wizard] [-c SITE]` (DESIGN.md)."""

from __future__ import annotations

import pytest

from hubwizard.cli import main as cli


@pytest.mark.parametrize("argv", [["-c", "site.toml"], ["--config", "site.toml"], ["--config=site.toml"],
                                  ["wizard", "-c", "site.toml"]])
def test_site_without_a_command_opens_the_wizard(argv, monkeypatch):
    seen = {}
    monkeypatch.setitem(cli._HANDLERS, "wizard", lambda args: seen.setdefault("config", args.config) and 0)
    assert cli.main(argv) == 0
    assert seen["config"] == "site.toml"


def test_other_commands_are_unchanged():
    args = cli.build_parser().parse_args(cli._wizard_by_default(["plan", "-c", "s.toml"]))
    assert (args.command, args.config) == ("plan", "s.toml")
