"""`hubwizard init`: the wizard's questions in a plain terminal (questionary), writing the
same site file the wizard writes.

The questions are hubwizard.core.sitefile.QUESTIONS and every answer is checked by the site
file's own models as it is typed, so init, the wizard and `load_site` never disagree."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hubwizard.core import sitefile
from hubwizard.core.config import DUMMY_FLAG
from hubwizard.core.sitefile import Question

HOST_QUESTIONS = (("address", "address (IP, DNS name or ~/.ssh/config alias)"), ("user", "SSH user"),
                  ("port", "SSH port"))


def _validator(check):
    """questionary wants True or the message to show."""

    def validate(text: str) -> bool | str:
        error = check(text)
        return True if error is None else error

    return validate


def _ask_setting(q: Question, draft: dict[str, Any], secrets: dict[str, str]) -> None:
    import questionary

    current = draft.get(q.section, {}).get(q.key, sitefile.derived_default(q, draft))
    if q.kind == "choice":
        value: Any = questionary.select(q.label, choices=list(q.choices), default=str(current)).unsafe_ask()
    elif q.kind == "bool":
        value = questionary.confirm(q.label, default=bool(current)).unsafe_ask()
    elif q.kind == "list":
        value = questionary.text(q.label, default=sitefile.shown(q, current),
                                 validate=_validator(lambda t: sitefile.answer_error(q, t, draft))).unsafe_ask()
    elif q.kind == "secret":
        value = questionary.password(q.label + " (empty: set it later)").unsafe_ask()
    else:
        value = questionary.text(q.label, default=str(current),
                                 validate=_validator(lambda t: _text_error(q, t.strip(), draft))).unsafe_ask()
        value = value.strip()
    if value == sitefile.default_of(q) and not q.required and q.kind != "list":
        value = ""  # keep the file short: defaults are not written
    sitefile.set_answer(draft, q, value, secrets)


def _text_error(q: Question, text: str, draft: dict[str, Any]) -> str | None:
    """The site file's verdict, and for the hub image also on the model's default, which names
    Docker Hub's library: init offers a pushable image, so typing that default back is refused."""
    error = sitefile.answer_error(q, text, draft)
    if error is None and (q.section, q.key) == ("images", "hub"):
        return sitefile.hub_image_error(text)
    return error


def _host_error(key: str, text: str) -> str | None:
    value: Any = int(text) if key == "port" and text.strip().isdigit() else text.strip()
    return sitefile.field_error("hosts", key, value, required=("name", "address"))


def _ask_host(name: str, role: str, others: list[str]) -> dict[str, Any]:
    import questionary

    host: dict[str, Any] = {"name": name, "role": role}
    for key, label in HOST_QUESTIONS:
        default = {"user": "root", "port": "22"}.get(key, "")
        text = questionary.text(f"{name}: {label}", default=default,
                                validate=_validator(lambda t, k=key: _host_error(k, t))).unsafe_ask().strip()
        if key == "port":
            if text != "22":
                host["port"] = int(text)
        elif key != "user" or text != "root":
            host[key] = text
    if others:
        jump = questionary.select(f"{name}: reached through (jump host)", choices=["(direct)", *others],
                                  default="(direct)").unsafe_ask()
        if jump != "(direct)":
            host["jump"] = jump
    return host


def _ask_hosts(draft: dict[str, Any]) -> None:
    import questionary

    if draft.get("hosts") and questionary.confirm(
            f"Keep the {len(draft['hosts'])} hosts already in the file?", default=True).unsafe_ask():
        return
    hosts = [_ask_host("hub", "hub", [])]
    while questionary.confirm(f"Add a node? ({len(hosts) - 1} so far)", default=len(hosts) == 1).unsafe_ask():
        taken = [h["name"] for h in hosts]
        name = questionary.text("node name", default=f"node{len(hosts)}", validate=_validator(
            lambda t, taken=taken: "that name is taken" if t.strip() in taken else _host_error("name", t))).unsafe_ask().strip()
        hosts.append(_ask_host(name, "node", taken))
    draft["hosts"] = hosts


def _load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"site": {}, "hosts": []}
    from hubwizard.core.config import load_site

    site = load_site(path, check_files=False)  # a key file that moved is asked about, not fatal
    draft = site.model_dump(exclude_defaults=True)
    draft["site"] = site.site.model_dump(exclude_defaults=True) | {"name": site.site.name}
    draft["hosts"] = [h.model_dump(exclude_defaults=True) | {"name": h.name, "address": h.address, "role": h.role}
                      for h in site.hosts]
    return draft


def _before(q: Question, draft: dict[str, Any]) -> None:
    """What the admin needs to know to answer ``q``: where to register the OAuth app (its client
    id comes from there), what a pushable hub image looks like."""
    if (q.section, q.key) == ("oauth", "client_id"):
        domain = draft.get("site", {}).get("domain", "DOMAIN")
        provider = draft.get("oauth", {}).get("provider", "the provider")
        print(f"init: register an OAuth app with {provider}; its callback URL is "
              f"https://{domain}/hub/oauth_callback (the client id and secret come from there)")
    elif (q.section, q.key) == ("images", "hub"):
        print("init: the hub image is built on the hub and pushed to the registry, and every node pulls it: "
              "on Docker Hub it must be USER/NAME:TAG with USER an account you can push to")


def _ask_settings(draft: dict[str, Any], secrets: dict[str, str]) -> None:
    """Every question that applies; a declined dummy login goes back to the provider question."""
    questions = list(sitefile.QUESTIONS)
    provider = next(i for i, q in enumerate(questions) if (q.section, q.key) == ("oauth", "provider"))
    i = 0
    while i < len(questions):
        q = questions[i]
        if sitefile.asked(q, draft):
            _before(q, draft)
            _ask_setting(q, draft, secrets)
            if q.key == DUMMY_FLAG and not draft.get("oauth", {}).get(DUMMY_FLAG):
                print("init: then choose a real login provider (github, google, cilogon, globus, generic)")
                i = provider
                continue
        i += 1


def _callback_hint(path: Path) -> None:
    """The URL the admin registers with the OAuth provider, or a warning for the dummy login."""
    from hubwizard.core.config import load_site, oauth_callback_url, site_warnings

    site = load_site(path, check_files=False)
    url = oauth_callback_url(site)
    if url:
        print(f"OAuth callback URL (register it with {site.oauth.provider}): {url}")
    for line in site_warnings(site):
        print(line)


def example_text() -> str:
    """The commented example site file, as shipped inside the package (works from a wheel)."""
    from importlib import resources

    return resources.files("hubwizard.examples").joinpath("site.toml").read_text(encoding="utf-8")


def write_example(path: Path, force: bool) -> int:
    """`init --example`: the example site file to edit, never over an existing file without --force."""
    from hubwizard.core.errors import UsageError

    if path.exists() and not force:
        raise UsageError(f"init --example: {path} exists; choose another file with -c, or add --force to overwrite it "
                         f"(the old file is kept as {sitefile.backup_path(path).name})")
    if path.exists():
        sitefile.backup_path(path).write_bytes(path.read_bytes())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(example_text(), encoding="utf-8")
    tmp.replace(path)
    print(f"wrote {path}: the example site (1 hub + 2 nodes); every setting is explained in its comments")
    print(f"next: edit the hosts, domain and login, then `hubwizard plan -c {path}` (or `hubwizard init -c {path}`)")
    return 0


def main(args: argparse.Namespace) -> int:
    """Ask, validate, write SITE (and SITE.secrets.toml, 0600, for secrets)."""
    path = Path(getattr(args, "config", None) or "site.toml")
    if getattr(args, "example", False):
        return write_example(path, getattr(args, "force", False))
    print(f"hubwizard init: questions for {path} (Ctrl-C stops; nothing is written until the end)")
    draft = _load(path)
    secrets: dict[str, str] = {}
    try:
        _ask_settings(draft, secrets)
        _ask_hosts(draft)
    except KeyboardInterrupt:
        print("\ninit: stopped; nothing was written", file=sys.stderr)
        return 130
    error = sitefile.site_error(draft)
    if error:
        print(f"init: the answers do not make a valid site: {error}", file=sys.stderr)
        return 2
    sitefile.write(path, draft)
    print(f"wrote {path}")
    _callback_hint(path)
    made = sitefile.generated_secrets(path, draft)
    secrets |= made
    if secrets:
        from hubwizard.core.secrets import write_secrets

        print(f"wrote {write_secrets(path, secrets)} (mode 0600)")
    if "backup_password" in made:
        print("init: made backup_password there (the backups' repository password): keep a copy of that file "
              "elsewhere, without it the backups cannot be read")
    print(f"next: hubwizard plan -c {path}")
    return 0
