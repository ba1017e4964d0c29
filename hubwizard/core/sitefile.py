"""Writing a site back to TOML, and checking one answer at a time with the site file's rules.

Why here: the wizard's forms and `hubwizard init` both build a site from answers; they must
write the same file and refuse the same values as `load_site`. So a single field is checked
by validating its whole section (pydantic models of hubwizard.core.config, nothing re-implemented),
and a file is only written after the whole site validated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from hubwizard.core.config import (
    DOCKER_HUB,
    DUMMY_FLAG,
    HUB_IMAGE_HELP,
    OAUTH_PROVIDERS,
    Host,
    Site,
    docker_hub_library,
    parse_site,
)

SECTIONS: dict[str, type[BaseModel]] = {
    name: info.annotation  # type: ignore[misc]
    for name, info in Site.model_fields.items()
    if name != "hosts"
}
SECTION_ORDER = ("site", "ssh", "docker", "storage", "quotas", "registry", "images", "hub", "https", "oauth", "classic",
                 "backups")


HEADER = "written by hubwizard; edit freely: comments, layout and values you set are kept when it saves"


def _explicit(model: Site, new_file: bool) -> dict[str, Any]:
    """What a file gains: values away from their defaults (the file stays short), plus the site's
    name (and in a new file its track), and each host's name, address and role."""
    data = model.model_dump(mode="json", exclude_defaults=True, exclude_none=True)
    data["site"] = data.get("site", {}) | {"name": model.site.name} | ({"track": model.site.track} if new_file else {})
    data["hosts"] = [h.model_dump(mode="json", exclude_defaults=True, exclude_none=True)
                     | {"name": h.name, "address": h.address, "role": h.role} for h in model.hosts]
    return data


def _merge(table: Any, full: dict[str, Any], explicit: dict[str, Any]) -> None:
    """Bring one TOML table to the site's values in place: a key the file has keeps its place
    and comment (and stays even when it equals the default), its value replaced only when it
    differs; a key the site no longer has goes; a key set away from its default is added."""
    for key in list(table.keys()):
        want = full.get(key)
        if want is None:
            del table[key]
        elif isinstance(want, dict) and isinstance(table[key], dict):
            _merge(table[key], want, explicit.get(key, {}))
        elif _plain(table[key]) != want:
            table[key] = want
    for key, value in explicit.items():
        if key not in table and value not in (None, {}, []):
            table[key] = value


def _plain(item: Any) -> Any:
    return item.unwrap() if hasattr(item, "unwrap") else item


def _hosts(doc: Any, model: Site, explicit: list[dict[str, Any]]) -> None:
    """[[hosts]] matched by name: a host kept keeps its table, a removed one goes, a new one is added."""
    import tomlkit

    full = {h.name: h.model_dump(mode="json") for h in model.hosts}
    wanted = {h["name"]: h for h in explicit}
    old = doc.get("hosts")
    fresh = old is None
    if fresh:
        old = tomlkit.aot()
        doc.add(tomlkit.nl())
        doc["hosts"] = old
    kept = set()
    for i in reversed(range(len(old))):
        name = _plain(old[i].get("name"))
        if name in full and name not in kept:
            _merge(old[i], full[name], wanted[name])
            kept.add(name)
        else:
            del old[i]
    for name, values in wanted.items():
        if name not in kept:
            t = tomlkit.table()
            for k, v in values.items():
                t[k] = v
            if not fresh:
                t.add(tomlkit.nl())  # a blank line before whatever follows, as between the others
            old.append(t)


def to_toml(site: Site | dict[str, Any], original: str | None = None) -> str:
    """The site as TOML. With ``original`` (the file as it is), that file with its comments and
    layout kept and only what changed changed; without, a short new file (defaults left out)."""
    import tomlkit

    model = site if isinstance(site, Site) else Site.model_validate(site)
    explicit = _explicit(model, not original)
    doc = tomlkit.parse(original) if original else tomlkit.document()
    if not original:
        doc.add(tomlkit.comment(HEADER))
    full = model.model_dump(mode="json")
    for name in SECTION_ORDER:
        if name in doc:
            _merge(doc[name], full[name], explicit.get(name, {}))
        elif explicit.get(name):
            t = tomlkit.table()
            for k, v in explicit[name].items():
                t[k] = v
            doc[name] = t
    _hosts(doc, model, explicit["hosts"])
    return tomlkit.dumps(doc)


def with_suggested(data: dict[str, Any]) -> dict[str, Any]:
    """The draft plus what the forms show for questions left untouched (the login: GitHub), so
    what is saved is what the admin saw. A suggestion is never the open dummy login."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for q in QUESTIONS:
        if q.suggested and q.key not in out.get(q.section, {}):
            out.setdefault(q.section, {})[q.key] = q.suggested
    return out


def backup_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".bak")


def write(path: str | Path, site: Site | dict[str, Any]) -> Path:
    """Validate, keep what the admin wrote (comments, layout, explicit values), copy the old file
    to SITE.bak, then write atomically (a crash never leaves half a site file)."""
    p = Path(path)
    original = p.read_text(encoding="utf-8") if p.exists() else None
    text = to_toml(site if isinstance(site, Site) else with_suggested(site), original)
    parse_site(text, p)  # what load_site will read must validate: refuse before writing
    if original is not None:
        if original == text:
            return p
        _atomic(backup_path(p), original)
    _atomic(p, text)
    return p


def _atomic(p: Path, text: str) -> None:
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    if p.exists():
        os.chmod(tmp, p.stat().st_mode & 0o777)
    os.replace(tmp, p)


def section_error(section: str, values: dict[str, Any], key: str | None = None) -> str | None:
    """Validate one section's values; return the message for ``key`` (or any), None if valid."""
    model = Host if section == "hosts" else SECTIONS[section]
    clean = {k: v for k, v in values.items() if v not in (None, "")}
    try:
        model.model_validate(clean)
    except ValidationError as exc:
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            model_level = not loc and (key is None or key in err["msg"])  # "provider 'github' needs client_id"
            if key is None or (loc and loc[0] == key) or model_level:
                msg = err["msg"].removeprefix("Value error, ")
                return f"{'.'.join(loc) + ': ' if loc and key is None else ''}{msg}"
        return None
    return None


def field_error(section: str, key: str, value: Any, current: dict[str, Any] | None = None,
                required: tuple[str, ...] = ()) -> str | None:
    """The message the site file would give for ``section.key = value``, or None if valid."""
    if key in required and value in (None, ""):
        return "is required"
    values = dict(current or {})
    values[key] = value
    if section == "site":
        values = {"name": "x", "domain": "x.org", "email": "a@x.org"} | {k: v for k, v in values.items() if v != ""}
        values[key] = value
    if section == "hosts":
        values = {"name": "x", "address": "x", "role": "node"} | {k: v for k, v in values.items() if v != ""}
        values[key] = value
    return section_error(section, values, key)


def site_error(data: dict[str, Any]) -> str | None:
    """The whole-site message (topology: one hub, jump hosts exist...), or None."""
    try:
        Site.model_validate(with_suggested(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        return f"{loc + ': ' if loc else ''}{err['msg'].removeprefix('Value error, ')}"
    return None


# ------------------------------------------------------------ the questions of the forms


@dataclass(frozen=True)
class Question:
    """One setting as the wizard's form and `hubwizard init` both ask it."""

    section: str
    key: str
    label: str
    kind: str = "text"  # text | choice | bool | secret | list (comma-separated names)
    choices: tuple[str, ...] = ()
    required: bool = False
    when: tuple[str, str, tuple[str, ...]] | None = None  # (section, key, values): ask only then
    suggested: str = ""  # shown first when the site file has no default (never the open dummy login)


def _choices(section: str, key: str) -> tuple[str, ...]:
    import typing

    ann = SECTIONS[section].model_fields[key].annotation
    return tuple(a for a in typing.get_args(ann) if isinstance(a, str))


QUESTIONS: tuple[Question, ...] = (
    Question("site", "name", "Site name (lowercase, e.g. workshop)", required=True),
    Question("site", "track", "Track", "choice", _choices("site", "track")),
    Question("site", "domain", "Domain the hub answers on", required=True),
    Question("site", "email", "Admin e-mail (Let's Encrypt notices)", required=True),
    # real providers first, the open dummy login last: it is never the suggestion
    Question("oauth", "provider", "Login (OAuth provider)", "choice", (*OAUTH_PROVIDERS, "dummy"), required=True,
             suggested="github"),
    Question("oauth", DUMMY_FLAG, "dummy: ANYONE can log in as any user, admins included. Only for a lab: "
             "do you accept that?", "bool", when=("oauth", "provider", ("dummy",))),
    Question("oauth", "client_id", "OAuth client id", when=("oauth", "provider", OAUTH_PROVIDERS)),
    Question("secrets", "oauth_client_secret", "OAuth client secret (kept in the 0600 secrets file)", "secret",
             when=("oauth", "provider", OAUTH_PROVIDERS)),
    Question("oauth", "authorize_url", "OIDC authorize URL", when=("oauth", "provider", ("generic",))),
    Question("oauth", "token_url", "OIDC token URL", when=("oauth", "provider", ("generic",))),
    Question("oauth", "userdata_url", "OIDC userdata URL", when=("oauth", "provider", ("generic",))),
    Question("hub", "admin_users", "Hub admins: login names at the provider, comma-separated", "list",
             when=("oauth", "provider", OAUTH_PROVIDERS)),
    Question("hub", "allowed_users", "Allowed users: logins at the provider who may use the hub, comma-separated "
             "(empty: the admins only)", "list", when=("oauth", "provider", OAUTH_PROVIDERS)),
    Question("storage", "kind", "Shared home folders", "choice", _choices("storage", "kind")),
    Question("storage", "path", "Exported path on the NFS server", when=("storage", "kind", ("nfs", "autofs"))),
    Question("quotas", "enabled", "Per-user disk quotas (XFS project quotas)", "bool"),
    Question("quotas", "default", "Default quota per user (e.g. 10G)", when=("quotas", "enabled", ("True",))),
    Question("images", "hub_base", "Hub base image"),
    Question("images", "singleuser", "Single-user server image"),
    Question("registry", "url", "Registry (host[:port]) for the hub image"),
    Question("registry", "username", "Registry user (empty: none)"),
    # asked after the registry: its default is derived from it (derived_default)
    Question("images", "hub", "Hub image hubwizard builds and pushes (Docker Hub: USER/NAME:TAG, USER being an "
             "account you can push to; another registry: REGISTRY/NAME:TAG)", required=True),
    Question("backups", "enabled", "Nightly encrypted backups of the users' folders and the hub database (restic)",
             "bool"),
    Question("backups", "target", "Backup target: sftp:USER@HOST:/path (another host over SSH) or "
             "s3:https://HOST/bucket/prefix (an S3-compatible bucket)", when=("backups", "enabled", ("True",))),
    Question("backups", "s3_access_key_id", "S3 access key id (S3 targets only)", when=("backups", "enabled", ("True",))),
    Question("secrets", "backup_s3_secret_key", "S3 secret key (S3 targets only; kept in the 0600 secrets file)",
             "secret", when=("backups", "enabled", ("True",))),
)


def default_of(q: Question) -> Any:
    """The value the site file takes when the question is left empty ("" when there is none)."""
    if q.section == "secrets" or q.kind == "list":
        return ""
    default = SECTIONS[q.section].model_fields[q.key].default
    return q.suggested if default is None or default is PydanticUndefined else default


def derived_default(q: Question, draft: dict[str, Any]) -> Any:
    """What a question offers given the answers so far: the hub image follows the registry chosen
    (Docker Hub: the registry user's namespace, which that user can push to; another registry:
    that registry), since the model's default ``jupyterhub-hub:latest`` names Docker Hub's own
    library, where nobody else can push. Other questions: default_of."""
    if (q.section, q.key) != ("images", "hub"):
        return default_of(q)
    if draft.get("images", {}).get("hub"):
        return draft["images"]["hub"]
    registry = str(draft.get("registry", {}).get("url") or "docker.io")
    user = draft.get("registry", {}).get("username")
    name = draft.get("site", {}).get("name") or "jupyterhub"
    if registry in DOCKER_HUB:
        return f"{user}/{name}-hub:latest" if user else ""
    return f"{registry}/{name}-hub:latest"


def hub_image_error(image: str) -> str | None:
    """Why nobody but Docker could push the hub image (Docker Hub's library), or None: the same
    words load_site gives for a hand-written [images] hub."""
    return HUB_IMAGE_HELP if docker_hub_library(image) else None


def names(value: Any) -> list[str]:
    """A list answer: ``"alice, bob"`` (or a list already) -> ["alice", "bob"]."""
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [v for v in str(value or "").replace(",", " ").split(" ") if v]


def shown(q: Question, value: Any) -> str:
    """An answer as a form shows it (a list as "alice, bob")."""
    return ", ".join(names(value)) if q.kind == "list" else str(value)


def asked(q: Question, draft: dict[str, Any]) -> bool:
    """Whether ``q`` applies given the answers so far (a client id only for a real provider)."""
    if q.when is None:
        return True
    section, key, values = q.when
    current = draft.get(section, {}).get(key, default_of(next(x for x in QUESTIONS if (x.section, x.key) == (section, key))))
    return str(current) in values


def answer_error(q: Question, value: Any, draft: dict[str, Any]) -> str | None:
    """The site file's verdict on one answer, given the rest of its section."""
    if q.section == "secrets":
        return None
    current = {k: v for k, v in draft.get(q.section, {}).items() if k != q.key}
    if q.section == "oauth" and q.key == "provider":
        return None if value in q.choices else f"choose one of {', '.join(q.choices)}"  # client id/flag asked next
    if q.key == DUMMY_FLAG:
        return None if value else "without it, choose a real login provider"
    if (q.section, q.key) == ("images", "hub") and value:
        error = field_error(q.section, q.key, value, current)
        if error or value == default_of(q):  # the untouched default is never written and load_site leaves
            return error                      # it alone; init, which offers a pushable one, refuses it itself
        return hub_image_error(str(value))
    if q.section == "backups" and q.key in ("enabled", "target"):
        return _backup_answer_error(q.key, value, draft)
    if q.kind == "list":
        if not names(value) and (q.section, q.key) == ("hub", "admin_users"):
            return "name at least one admin (your own login at the provider): nobody could run the hub otherwise"
        return field_error(q.section, q.key, names(value), current)
    return field_error(q.section, q.key, value, current, required=(q.key,) if q.required else ())


def _backup_answer_error(key: str, value: Any, draft: dict[str, Any]) -> str | None:
    """Backups switched on, and their target, each on its own: the section's cross-checks (a
    target once enabled, a key id for an S3 target) need answers asked after them; the whole
    site's check at the end (init, Save) has them all."""
    if key == "enabled":
        return None
    if value in ("", None):
        enabled = bool(draft.get("backups", {}).get("enabled"))
        return 'name one: "sftp:USER@HOST:/path" or "s3:https://HOST/bucket/prefix"' if enabled else None
    return field_error("backups", "target", value, {"enabled": False})


def generated_secrets(site_path: str | Path, draft: dict[str, Any]) -> dict[str, str]:
    """Secrets the answers call for that hubwizard makes itself: the backup repository's password
    when backups are on, once (an existing one is kept: the backups made with it need it)."""
    import secrets as pysecrets
    import tomllib

    from hubwizard.core.secrets import secrets_path

    if not draft.get("backups", {}).get("enabled"):
        return {}
    path = secrets_path(site_path)
    current = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    return {} if current.get("backup_password") else {"backup_password": pysecrets.token_urlsafe(32)}


def set_answer(draft: dict[str, Any], q: Question, value: Any, secrets: dict[str, str] | None = None) -> None:
    """Store an answer in the draft (a secret in ``secrets``); empty means 'the default'."""
    if q.section == "secrets":
        if value and secrets is not None:
            secrets[q.key] = value
        return
    section = draft.setdefault(q.section, {})
    if q.kind == "list":
        value = names(value) or None
    if value in ("", None):
        section.pop(q.key, None)
    else:
        section[q.key] = value
