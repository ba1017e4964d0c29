"""`hubwizard init --example -c FILE`: the commented example site file, from the package."""

from __future__ import annotations

from pathlib import Path

from hubwizard.cli import main as cli
from hubwizard.core.config import parse_site

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "site.toml"


def test_init_example_writes_the_shipped_example(tmp_path, capsys):
    path = tmp_path / "mysite.toml"
    assert cli.main(["init", "--example", "-c", str(path)]) == 0
    assert path.read_text() == EXAMPLE.read_text()
    assert f"hubwizard plan -c {path}" in capsys.readouterr().out
    parse_site(path.read_text(), path)  # the example is a valid site as written


def test_init_example_never_overwrites_without_force(tmp_path, capsys):
    path = tmp_path / "site.toml"
    path.write_text("# mine\n")
    assert cli.main(["init", "--example", "-c", str(path)]) == 2
    assert "--force" in capsys.readouterr().err and path.read_text() == "# mine\n"
    assert cli.main(["init", "--example", "--force", "-c", str(path)]) == 0
    assert path.read_text() == EXAMPLE.read_text() and (tmp_path / "site.toml.bak").read_text() == "# mine\n"


def test_a_typo_points_to_a_command_that_writes_the_example(tmp_path):
    from hubwizard.core.errors import ConfigError

    text = EXAMPLE.read_text().replace('email = "admin@example.org"', 'email = "admin@example.org"\nemial = "x"')
    try:
        parse_site(text, tmp_path / "s.toml")
    except ConfigError as exc:
        assert "hubwizard init --example" in str(exc)
    else:
        raise AssertionError("a typo must be refused")
