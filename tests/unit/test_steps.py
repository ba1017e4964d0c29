"""Recipe loading: values YAML gives in several spellings."""

from __future__ import annotations


def test_recipe_file_modes_parse_in_every_spelling():
    import pytest

    from hubwizard.core.errors import ConfigError
    from hubwizard.core.steps import parse_recipe

    for spelling in ("0600", "0o600", "'0o600'", "384"):
        text = f"id: s\napply:\n  - file: x.j2\n    path: /x\n    mode: {spelling}\n"
        assert parse_recipe(text, "t.yaml")[0].apply[0].mode == 0o600
    with pytest.raises(ConfigError, match="octal"):
        parse_recipe("id: s\napply:\n  - file: x.j2\n    path: /x\n    mode: rw\n", "t.yaml")
