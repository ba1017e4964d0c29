"""Day-2 user changes through the hub API (issue 16 item 4): what the running hub must be told
so its users are the site file's, what the plan says about it, and that the user lists live
outside the hub image (a changed list makes no new image, hence no restart).
The hub itself: tests/integration/test_day2.py (a real lab)."""

from __future__ import annotations

import json

from hubwizard.actions.hub_e2e import E2E_USER
from hubwizard.actions.hub_image import build_files, context_digest
from hubwizard.actions.hub_users import UserChanges, Wanted, user_changes
from hubwizard.core.render import Facts, generated_files, hub_users_json
from hubwizard.core.steps import load_steps
from tests.unit.test_render import make_site

WANTED = Wanted(admins=frozenset({"teacher"}), allowed=frozenset({"student1", "student2"}), allow_all=False)


def test_nothing_to_do_when_the_hub_has_the_lists() -> None:
    hub = {"teacher": True, "student1": False, "student2": False, E2E_USER: False}
    assert not user_changes(WANTED, hub)


def test_a_new_user_and_a_new_admin_are_added_and_patched() -> None:
    wanted = Wanted(frozenset({"teacher", "student1"}), frozenset({"student1", "student2", "mallory"}), False)
    changes = user_changes(wanted, {"teacher": True, "student1": False, "student2": False})
    assert changes == UserChanges(add=("mallory",), make_admin=("student1",))
    assert changes.describe().startswith("users added through the hub API, no restart: add mallory; make student1 admin")


def test_a_user_no_longer_listed_is_removed_and_the_plan_says_what_happens_to_their_server() -> None:
    changes = user_changes(WANTED, {"teacher": True, "student1": False, "student2": False, "leaver": True})
    assert changes == UserChanges(remove=("leaver",))
    text = changes.describe()
    assert "no restart" in text and "remove leaver" in text and "running server of theirs is stopped" in text


def test_an_admin_dropped_from_admin_users_but_still_allowed_keeps_the_account() -> None:
    changes = user_changes(WANTED, {"teacher": True, "student1": True, "student2": False})
    assert changes == UserChanges(drop_admin=("student1",))


def test_the_checks_test_user_is_never_removed_and_allow_all_removes_nobody() -> None:
    assert E2E_USER not in user_changes(WANTED, {E2E_USER: False}).remove
    anyone = Wanted(frozenset({"teacher"}), frozenset(), allow_all=True)
    assert user_changes(anyone, {"teacher": True, "someone": False}).remove == ()


def test_the_rendered_lists_file_is_the_site_files_lists() -> None:
    site = make_site()
    text = hub_users_json(site)
    assert Wanted.parse(text) == Wanted.of(site)
    assert json.loads(text)["admin_users"] == sorted(site.hub.admin_users)
    review = [f for f in generated_files(site, Facts.offline(site)) if f.path.endswith("hubwizard-users.json")]
    assert len(review) == 1 and review[0].content == text


def _config(site) -> str:  # noqa: ANN001
    return next(f.content for f in generated_files(site, Facts.offline(site)) if f.path.endswith("jupyterhub_config.py"))


def test_a_user_list_change_makes_no_new_hub_image() -> None:
    """The lists are read from the data volume at start-up, not baked into the image."""
    before = make_site()
    after = make_site(**{"allowed_users = [": 'allowed_users = ["zoe", '})
    assert after.hub.allowed_users != before.hub.allowed_users
    files = [build_files(s, Facts.offline(s), None) for s in (before, after)]
    assert context_digest(files[0]) == context_digest(files[1])
    config = _config(after)
    assert "zoe" not in config and "hubwizard-users.json" in config
    assert "c.Authenticator.allow_existing_users = True" in config


def test_the_users_service_is_separate_from_the_checks_limited_one() -> None:
    config = _config(make_site())
    assert '"name": "hubwizard-users", "api_token": _users_token, "admin": True' in config
    assert "read_secret('hubwizard_users_token')" in config
    check_role = config.split('"name": "hubwizard-check",', 1)[1].split('"services"', 1)[0]
    assert "hubwizard_users_token" not in check_role and '"admin"' not in check_role


def test_the_hub_users_step_follows_the_hub_service() -> None:
    steps = {s.id: s for s in load_steps("swarm-mode")}
    users = steps["hub-users"]
    assert users.needs == ("hub-service",) and steps["hub-service"].order < users.order < steps["https"].order
