"""Hostile values and the site files that carry them, for the property-based suite.

Fields are found by walking ``hubwizard.core.config.Site`` (nested models, lists of models,
Optional, Annotated, Literal), so a field added tomorrow is fuzzed tomorrow.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel

from hubwizard.core.config import Site

FieldPath = tuple  # ("site", "domain") or ("hosts", 0, "name")

TEMPLATES = [
    ";touch {m}", "$(touch {m})", "`touch {m}`", "\ntouch {m}\n", "' ; touch {m} ; '", '" ; touch {m} ; "',
    "&& touch {m}", "|| touch {m}", "| touch {m}", "> {m}", "a\rtouch {m}", "$(touch${{IFS}}{m})",
    "{{{{ cycler.__init__.__globals__.os.system('touch {m}') }}}}", "{{% raw %}}x", "\\'; touch {m} #",
    "../../../../../../etc/passwd", "..", "/var/../etc/shadow", "/var/nfs/../../root", "-rf", "--help",
    "*", "~root/.ssh", "%s%s%n", "$HOME", "\t", " ", "", "a b", "x\x00y", "\u202ehub", "ｈｕｂ", "hüb.example.org",
    "😀", "0.0.0.0/0", "*.example.org", "127.0.0.1 ; touch {m}", "http://x/$(touch {m})",
]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _takes_str(tp: Any) -> bool:
    """True if a field of type ``tp`` holds text somewhere (str, Literal of str, list[str], Optional)."""
    origin = typing.get_origin(tp)
    if tp is str:
        return True
    if origin is typing.Literal:
        return any(isinstance(a, str) for a in typing.get_args(tp))
    if origin is typing.Annotated:
        return _takes_str(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType, list, tuple):
        return any(_takes_str(a) for a in typing.get_args(tp))
    return False


def _is_list(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is list:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_list(a) for a in typing.get_args(tp))
    return False


def _models_in(tp: Any) -> list[type[BaseModel]]:
    if _is_model(tp):
        return [tp]
    return [m for a in typing.get_args(tp) for m in _models_in(a)]


def string_fields(model: type[BaseModel] = Site, prefix: FieldPath = ()) -> list[tuple[FieldPath, bool]]:
    """Every text field of the site file as (path, is_list); lists of models index element 0."""
    out: list[tuple[FieldPath, bool]] = []
    for name, info in model.model_fields.items():
        tp = info.annotation
        sub = _models_in(tp)
        if sub:
            path = (*prefix, name, 0) if _is_list(tp) else (*prefix, name)
            out += string_fields(sub[0], path)
        elif _takes_str(tp):
            out.append(((*prefix, name), _is_list(tp)))
    return out


def hostile_text(marker: Path) -> st.SearchStrategy[str]:
    """Shell metacharacters, template syntax, newlines, unicode, huge values, paths with '..'."""
    fixed = st.sampled_from([t.format(m=marker) for t in TEMPLATES])
    free = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
    glued = st.builds(lambda a, b, c: a + b + c, st.sampled_from(["", "a", "hub", "/var/nfs", "x.example.org",
                                                                  "10.0.0.1"]), fixed, free)
    huge = st.builds(lambda c, n: c * n, st.sampled_from(["a", "/", "é", "$(touch " + str(marker) + ")"]),
                     st.integers(300, 70000))
    return st.one_of(fixed, free, glued, huge)


# ----------------------------------------------------------------------------- site files


def base_site(tmp: Path) -> dict[str, Any]:
    """A valid site whose hosts are this machine through the local transport (no SSH)."""
    return {
        "site": {"name": "rel", "domain": "hub.example.org", "email": "a@example.org", "subnet": "127.0.0.0/8"},
        "ssh": {"known_hosts": str(tmp / "known_hosts"), "config": "/dev/null"},  # a named config must exist
        "oauth": {"provider": "dummy", "i_understand_anyone_can_log_in": True},
        "storage": {"path": str(tmp / "work")},
        "hosts": [
            {"name": "hub", "address": "127.0.0.1", "role": "hub", "transport": "local",
             "internal_address": "127.0.0.1"},
            {"name": "node1", "address": "127.0.0.1", "role": "node", "transport": "local",
             "internal_address": "127.0.0.1"},
        ],
    }


def with_value(data: dict[str, Any], path: FieldPath, value: Any) -> dict[str, Any]:
    import copy

    data = copy.deepcopy(data)
    node: Any = data
    for key in path[:-1]:
        node = node[key] if isinstance(key, int) else node.setdefault(key, {})
    node[path[-1]] = value
    return data


def toml_string(value: str) -> str:
    """A TOML basic string: quote, backslash and control characters escaped."""
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return toml_string(str(v))


def to_toml(data: dict[str, Any]) -> str:
    lines: list[str] = []
    for section, body in data.items():
        if isinstance(body, list):
            for item in body:
                lines.append(f"[[{section}]]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in item.items()]
                lines.append("")
        else:
            lines.append(f"[{section}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in body.items()]
            lines.append("")
    return "\n".join(lines)


def expr(path: FieldPath) -> str:
    """The Jinja expression for a field path: ("hosts", 0, "name") -> cfg.hosts[0].name."""
    out = "cfg"
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else f".{key}"
    return out


def label(path: FieldPath) -> str:
    return ".".join(f"[{k}]" if isinstance(k, int) else str(k) for k in path).replace(".[", "[")


def echo_recipe(fields: list[tuple[FieldPath, bool]], out: Path) -> str:
    """One step on the hub that writes 'label NUL value NUL' for every text field to OUT:
    what reached the host, byte for byte."""
    parts = []
    for path, is_list in fields:
        value = f"{expr(path)} | join(',')" if is_list else expr(path)
        parts.append(f"{label(path)!r} {{{{ {value} }}}}")
    import yaml

    step = {"id": "echo-fields", "title": "Echo every text field", "order": 10, "tracks": ["swarm-mode", "classic"],
            "targets": "hub", "apply": [{"run": f"printf '%s\\0' {' '.join(parts)} > {out}", "sudo": False}]}
    return yaml.safe_dump([step], width=100000)
