"""Steps as data: recipes/*.yaml (the hubwizard.recipes data package) loaded into typed objects.

A recipe file holds one step (or a list of steps) an admin can read like the tutorial:
what it does in words, then its check, apply and verify items. An item is one of
  run:   a shell command (Jinja2, every value shell-quoted)
  file:  a rendered asset that must be on the host with this content
  call:  a named Python probe/action, for structured results (swarm state, join tokens)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

import yaml

from hubwizard.core.errors import ConfigError

Targets = Literal["hub", "nodes", "nfs", "all", "local", "backup"]  # backup: storage host, then the hub


@dataclass(frozen=True)
class Item:
    """One command, file or call inside a phase."""

    run: str | None = None
    file: str | None = None  # asset name, e.g. "daemon.json.j2"
    path: str | None = None  # where the file goes on the host
    mode: int = 0o644
    call: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    name: str = ""  # what a verify check is called in reports
    sudo: bool = True
    stdin: str | None = None  # Jinja2 template (e.g. a secret); never shown
    timeout: float | None = None
    when: str | None = None  # Jinja2 expression; item skipped when false
    ok_codes: tuple[int, ...] = (0,)

    @property
    def label(self) -> str:
        return self.name or self.run or (f"file {self.path}" if self.file else f"{self.call}()")


@dataclass(frozen=True)
class FixHint:
    match: str  # substring (case-insensitive) of the failing output
    hint: str


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    description: str
    order: int
    tracks: tuple[str, ...]
    targets: Targets
    parallel: bool = True
    when: str | None = None
    check: tuple[Item, ...] = ()
    apply: tuple[Item, ...] = ()
    verify: tuple[Item, ...] = ()
    fix: tuple[FixHint, ...] = ()
    source: str = ""
    scale_out: bool = False  # part of what add-node runs for a new node
    # earlier steps whose work this step's check looks at (plan: "needs STEP first"); None: not
    # declared, so plan puts a failed check down to any earlier step that would change the host
    needs: tuple[str, ...] | None = None

    def fix_for(self, output: str) -> str | None:
        low = output.lower()
        for h in self.fix:
            if h.match.lower() in low:
                return h.hint
        return None


_ITEM_KEYS = {f for f in Item.__dataclass_fields__}
_STEP_KEYS = {"id", "title", "description", "order", "tracks", "targets", "parallel", "when",
              "check", "apply", "verify", "fix", "scale_out", "needs"}


def _item(raw: Any, where: str) -> Item:
    if isinstance(raw, str):
        return Item(run=raw)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: an item must be a string or a mapping")
    unknown = set(raw) - _ITEM_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown item key(s) {sorted(unknown)}")
    kinds = [k for k in ("run", "file", "call") if raw.get(k)]
    if len(kinds) != 1:
        raise ConfigError(f"{where}: an item needs exactly one of run, file, call")
    if raw.get("file") and not raw.get("path"):
        raise ConfigError(f"{where}: a file item needs path")
    data = dict(raw)
    if "mode" in data:
        data["mode"] = _mode(data["mode"], where)
    if "ok_codes" in data:
        data["ok_codes"] = tuple(data["ok_codes"])
    return Item(**data)


def _mode(value: Any, where: str) -> int:
    """File modes as YAML gives them: 0644 / 0o644 (read as a string) / 420."""
    if isinstance(value, int) and 0 <= value <= 0o7777:
        return value
    text = str(value).strip().lower().removeprefix("0o")
    try:
        mode = int(text, 8)
    except ValueError:
        raise ConfigError(f"{where}: mode {value!r} is not an octal file mode such as 0644") from None
    if not 0 <= mode <= 0o7777:
        raise ConfigError(f"{where}: mode {value!r} is out of range")
    return mode


def _step(raw: dict[str, Any], source: str) -> Step:
    unknown = set(raw) - _STEP_KEYS
    if unknown:
        raise ConfigError(f"{source}: unknown step key(s) {sorted(unknown)}")
    sid = raw.get("id")
    if not sid:
        raise ConfigError(f"{source}: a step needs an id")
    phases = {p: tuple(_item(x, f"{source}:{sid}.{p}[{i}]") for i, x in enumerate(raw.get(p) or []))
              for p in ("check", "apply", "verify")}
    return Step(
        id=sid,
        title=raw.get("title", sid),
        description=(raw.get("description") or "").strip(),
        order=int(raw.get("order", 1000)),
        tracks=tuple(raw.get("tracks", ["swarm-mode"])),
        targets=raw.get("targets", "all"),
        parallel=bool(raw.get("parallel", True)),
        when=raw.get("when"),
        fix=tuple(FixHint(**h) for h in raw.get("fix") or []),
        source=source,
        scale_out=bool(raw.get("scale_out", False)),
        needs=_needs(raw.get("needs"), f"{source}:{sid}"),
        **phases,
    )


def _needs(value: Any, where: str) -> tuple[str, ...] | None:
    """``needs: docker``, ``needs: [docker, registry]`` or ``needs: []`` (nothing): earlier steps."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        raise ConfigError(f"{where}: needs must be a step id or a list of step ids")
    return tuple(items)


def parse_recipe(text: str, source: str) -> list[Step]:
    data = yaml.safe_load(text)
    docs = data if isinstance(data, list) else [data]
    return [_step(d, source) for d in docs if d]


def load_steps(track: str, extra_dirs: list[str] | None = None) -> list[Step]:
    """Every step of ``track``, in order; ``extra_dirs`` adds recipe folders (tests)."""
    steps: list[Step] = []
    root = resources.files("hubwizard.recipes")  # the recipes/ folder, installed as a data package
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            steps += parse_recipe(entry.read_text(encoding="utf-8"), entry.name)
    for d in extra_dirs or []:
        from pathlib import Path

        for p in sorted(Path(d).glob("*.yaml")):
            steps += parse_recipe(p.read_text(encoding="utf-8"), str(p))
    chosen = [s for s in steps if track in s.tracks]
    ids = [s.id for s in chosen]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise ConfigError(f"duplicate step ids in recipes: {sorted(dupes)}")
    known = {s.id for s in steps}
    for s in chosen:
        unknown = [n for n in s.needs or () if n not in known]
        if unknown:
            raise ConfigError(f"{s.source}:{s.id}: needs names no step: {unknown}")
    return sorted(chosen, key=lambda s: (s.order, s.id))
