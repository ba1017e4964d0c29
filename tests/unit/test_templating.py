"""Values reach a shell as one literal argument, whatever they contain."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubwizard.core.errors import ConfigError
from hubwizard.core.templating import plain_token, python_literal, render_command

HOSTILE = ["; touch /tmp/x", "$(touch /tmp/x)", "`touch /tmp/x`", "a'b", 'a"b', "a\nb", "\\", "*", "-rf /"]


@pytest.mark.parametrize("value", HOSTILE)
def test_shell_value_is_one_argument(value):
    cmd = render_command("echo {{ v }} done", {"v": value})
    assert shlex.split(cmd) == ["echo", value, "done"]


@given(st.text())
def test_any_text_is_one_argument(value):
    assert shlex.split(render_command("printf %s {{ v }}", {"v": value}), posix=True)[2:] == [value] or value == ""


def test_raw_is_explicit():
    assert render_command("a {{ v | raw }}", {"v": "$(x)"}) == "a $(x)"


def test_unknown_value_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown value"):
        render_command("echo {{ nope }}", {})


@pytest.mark.parametrize("value", [v for v in HOSTILE if v != "*"])
def test_token_mode_refuses_and_python_mode_stays_literal(value):
    with pytest.raises(ConfigError):
        plain_token(value)
    import ast

    assert ast.literal_eval(python_literal(value)) == value
