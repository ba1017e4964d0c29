"""Jinja2 rendering where injection is impossible by construction.

Every ``{{ value }}`` is escaped for the language it lands in by the Environment's
``finalize`` hook: shell-quoted in commands, ``repr()`` in Python files, JSON in JSON,
and in plain config formats (nginx, exports, Dockerfile) refused unless it is a plain
token. A template author opts out only with an explicit ``|raw``.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterable
from functools import cache
from importlib import resources
from typing import Any

import jinja2

from hubwizard.core.errors import ConfigError


class Raw(str):
    """A string a template author vouched for: emitted as is."""


_TOKEN = re.compile(r"[A-Za-z0-9._:/@%+=,~*-]*\Z")  # fullmatch: "$" would let a trailing newline in


def raw(value: Any) -> Raw:
    return Raw(value)


def shell_quote(value: Any) -> str:
    """Finalize for shell commands: one literal argument per ``{{ }}``."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return "''"
    return shlex.quote(str(value))


def python_literal(value: Any) -> str:
    """Finalize for Python files: values become literals, never code."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, str | int | float | bool | type(None) | list | tuple | dict):
        return repr(_plain(value))
    return repr(str(value))


def json_literal(value: Any) -> str:
    """Finalize for JSON files."""
    if isinstance(value, Raw):
        return str(value)
    return json.dumps(_plain(value))


def plain_token(value: Any) -> str:
    """Finalize for formats without quoting rules (nginx, exports, Dockerfile): tokens only."""
    if isinstance(value, Raw):
        return str(value)
    text = str(value)
    if not _TOKEN.fullmatch(text):
        raise ConfigError(f"value {text!r} cannot be written into a config file: only letters, digits and ._:/@%+=,~*-")
    return text


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def shjoin(values: Iterable[Any]) -> Raw:
    """Several arguments, each quoted: ``{{ names | shjoin }}``."""
    return Raw(" ".join(shlex.quote(str(v)) for v in values))


def gofmt(expr: str) -> Raw:
    """A Go template for ``docker --format`` without fighting Jinja's braces: ``{{ gofmt('.ID') }}``."""
    return Raw(shlex.quote("{{" + expr + "}}"))


_FINALIZERS: dict[str, Callable[[Any], str]] = {
    "shell": shell_quote,
    "python": python_literal,
    "json": json_literal,
    "token": plain_token,
}


@cache
def environment(kind: str) -> jinja2.Environment:
    """A Jinja2 environment escaping for ``kind`` (shell, python, json, token)."""
    loader = jinja2.PackageLoader("hubwizard.assets", "") if kind != "shell" else None
    env = jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        finalize=_FINALIZERS[kind],
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["raw"] = raw
    env.filters["shjoin"] = shjoin
    env.filters["shell"] = lambda v: Raw(shell_quote(v))
    env.filters["py"] = lambda v: Raw(python_literal(v))
    env.filters["json"] = lambda v: Raw(json_literal(v))
    env.globals["gofmt"] = gofmt
    return env


def kind_for(asset_name: str) -> str:
    """Which escaping an asset gets, from its file name."""
    name = asset_name.removesuffix(".j2")
    if name.endswith(".py"):
        return "python"
    if name.endswith(".sh") or name.endswith("incrontab"):
        return "shell"
    if name.endswith(".json"):
        return "json"
    return "token"


def render_command(template: str, context: dict[str, Any]) -> str:
    """Render one shell command of a recipe."""
    try:
        return environment("shell").from_string(template).render(context)
    except jinja2.UndefinedError as exc:
        raise ConfigError(f"recipe command uses an unknown value: {exc.message}") from None


def render_asset(name: str, context: dict[str, Any]) -> str:
    """Render ``assets/NAME`` with the escaping its file type needs."""
    kind = kind_for(name)
    if kind == "shell":
        source = asset_source(name)
        template = environment("shell").from_string(source)
    else:
        template = environment(kind).get_template(name)
    try:
        return template.render(context)
    except jinja2.UndefinedError as exc:
        raise ConfigError(f"asset {name}: unknown value: {exc.message}") from None


def asset_source(name: str) -> str:
    return resources.files("hubwizard.assets").joinpath(name).read_text(encoding="utf-8")


def asset_names() -> list[str]:
    """Every template under assets/ (relative names, sorted)."""
    root = resources.files("hubwizard.assets")
    out: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir() and not child.name.startswith("__"):
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".j2"):
                out.append(prefix + child.name)

    walk(root, "")
    return sorted(out)
