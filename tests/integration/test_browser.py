"""A real browser (Debian's chromium + chromedriver, driven by Selenium) through a student's
morning: open the site, log in through the lab's OpenID provider by filling its form, land in
JupyterLab served from a worker node, write a file in a terminal, log out.

The hub's certificate is checked here against the lab's ACME (pebble) root, then chromium is told
to accept exactly that key (--ignore-certificate-errors-spki-list): no blanket TLS bypass.
hub.lab.test resolves to the hub machine for this browser only (--host-resolver-rules).
On failure a screenshot and the page's HTML land in the test's tmp dir; the message names them.

Runs on the session's shared swarm lab, or on a lab you applied by hand:
HUBWIZARD_TEST_LAB_SITE=/path/site.toml pytest -m lab tests/integration/test_browser.py
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hubwizard.core.render import HUB_SERVICE
from tests.lab_web import LabHub, lab_hub

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1800)]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
USER = "student2"
MARK = f"written-by-chromium-{uuid.uuid4().hex[:8]}"


def spki_pin(hub: LabHub) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) of the hub's certificate, after a verified handshake."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ctx = ssl.create_default_context(cafile=str(hub.ca))
    with socket.create_connection((hub.address, 443), timeout=15) as raw, \
            ctx.wrap_socket(raw, server_hostname=hub.domain) as tls:
        der = tls.getpeercert(binary_form=True)
    spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@contextlib.contextmanager
def chromium(hub: LabHub, profile: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    provider = urllib.parse.urlsplit(hub.site.oauth.authorize_url or "").hostname
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--disable-features=HttpsUpgrades", "--window-size=1400,900",
                 f"--user-data-dir={profile}",
                 # the hub's name to its machine, every other name unresolved: lab traffic only
                 f"--host-resolver-rules=MAP {hub.domain} {hub.address}, MAP * ~NOTFOUND, EXCLUDE {provider}",
                 f"--ignore-certificate-errors-spki-list={spki_pin(hub)}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))  # no Selenium Manager download
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


class Steps:
    """Each step named; a failing one leaves a screenshot and the HTML beside the test, and its
    message carries what the page said and the hub's log tail (CI keeps only the message)."""

    def __init__(self, driver: Any, out: Path, hub_log: Callable[[], str] = lambda: "") -> None:
        self.driver, self.out, self.hub_log = driver, out, hub_log

    def __call__(self, name: str, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - any failure gets its evidence saved
            shot, html = self.out / f"{name}.png", self.out / f"{name}.html"
            with contextlib.suppress(Exception):
                self.driver.save_screenshot(str(shot))
                html.write_text(self.driver.page_source)
            url = getattr(self.driver, "current_url", "?")
            raise AssertionError(f"browser step {name!r} failed at {url}: {type(exc).__name__}: {exc}\n"
                                 f"screenshot: {shot}\npage: {html}\n"
                                 f"the page says: {self.page_text()}\n"
                                 f"the hub's log, last lines:\n{self.hub_log()}") from exc

    def page_text(self) -> str:
        from selenium.webdriver.common.by import By

        try:
            return " ".join(self.driver.find_element(By.TAG_NAME, "body").text.split())[:800]
        except Exception as exc:  # noqa: BLE001 - evidence only
            return f"(unreadable: {type(exc).__name__})"


def net_error(driver: Any) -> bool:
    """Chromium's own error page: on a machine where other labs create and remove Docker networks,
    chromium aborts loads with ERR_NETWORK_CHANGED, also in the middle of a redirect (the page then
    keeps the hub's URL: seen in a run at 09:25, "Your connection was interrupted")."""
    try:
        return driver.current_url.startswith("chrome-error://") or bool(driver.execute_script(
            "return !!document.querySelector('#main-frame-error, body.neterror')"))
    except Exception:  # noqa: BLE001 - the page is being replaced: not an error page (yet)
        return False


def reload_on_net_error(driver: Any) -> bool:
    """What a person does on chromium's error page: Reload. True when it did."""
    if not net_error(driver):
        return False
    print(f"\n[browser] chromium's error page at {driver.current_url.split('?')[0]}: reloading")
    time.sleep(1)
    driver.refresh()
    return True


def visit(driver: Any, url: str, tries: int = 4) -> None:
    """driver.get, again when chromium shows its own error page (net_error)."""
    for _attempt in range(tries):
        driver.get(url)
        if not net_error(driver):
            return
        time.sleep(2)
    raise AssertionError(f"chromium could not load {url} ({tries} tries; see the screenshot)")


def wait_for(driver: Any, css: str, timeout: float = 60) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    clickable = ec.element_to_be_clickable((By.CSS_SELECTOR, css))
    return WebDriverWait(driver, timeout).until(lambda d: not reload_on_net_error(d) and clickable(d))


def wait_text(driver: Any, css: str, text: str, timeout: float) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: text in d.find_element(By.CSS_SELECTOR, css).text)


def wait_gone(driver: Any, css: str, timeout: float) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(ec.invisibility_of_element_located((By.CSS_SELECTOR, css)))


def stop_server(driver: Any, tries: int = 4) -> None:
    """Click "Stop My Server" as a student does: again when the page did not react. Under load the
    button is drawn before the hub's script (loaded through require.js) binds its click; a click
    then does nothing (seen in a CI run at load 18: the button unchanged 180 s later). The page
    reacted when it disabled "My Server" or hid "Stop My Server"."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def hidden(d: Any) -> bool:
        stop = d.find_elements(By.CSS_SELECTOR, "#stop")
        return not stop or not stop[0].is_displayed()

    def reacted(d: Any) -> bool:
        start = d.find_elements(By.CSS_SELECTOR, "#start")
        return hidden(d) or bool(start and start[0].get_attribute("disabled"))

    for attempt in range(1, tries + 1):
        if hidden(driver):
            break
        driver.find_element(By.CSS_SELECTOR, "#stop").click()
        try:
            WebDriverWait(driver, 15).until(reacted)
            break
        except TimeoutException:
            if attempt == tries:
                raise AssertionError(f"the hub's page did not react to {tries} clicks on Stop My Server") from None
            print(f"\n[browser] Stop My Server: no reaction to click {attempt} in 15 s, clicking again")
    wait_gone(driver, "#stop", 180)


def wait_url(driver: Any, fragment: str, timeout: float) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: not reload_on_net_error(d) and fragment in d.current_url)


def spawn_outcome(driver: Any) -> str:
    """"ready" once the browser is at the user's server; "error" when the hub showed an error
    page instead (the URL stays at /hub/spawn, or the pending page says the spawn failed)."""
    from selenium.webdriver.common.by import By

    if reload_on_net_error(driver):
        return ""
    url = driver.current_url
    if f"/user/{USER}/" in url:
        return "ready"
    if "/hub/spawn" not in url:
        return ""
    try:
        text = driver.find_element(By.TAG_NAME, "body").text
    except Exception:  # noqa: BLE001 - the page is being replaced: not decided yet
        return ""
    return "error" if url.rstrip("/").endswith("/hub/spawn") or "Spawn failed" in text else ""


def wait_for_server(driver: Any, step: Steps, hub: LabHub, timeout: float = 420) -> None:
    """The server after login. When the hub answers with an error page instead, a student
    starts again from the hub's home page; the test does the same once, and says so in a
    warning carrying the page's text and the hub's log (CI keeps them), then needs the server."""
    import warnings

    from selenium.webdriver.support.ui import WebDriverWait

    outcome = WebDriverWait(driver, timeout, poll_frequency=2).until(spawn_outcome)
    if outcome == "ready":
        return
    warnings.warn(f"the first spawn of {USER} showed an error page at {driver.current_url}: "
                  f"{step.page_text()}\nthe hub's log, last lines:\n{step.hub_log()}", stacklevel=1)
    visit(driver, f"{hub.url}/hub/home")
    wait_for(driver, "#start", 120).click()
    outcome = WebDriverWait(driver, timeout, poll_frequency=2).until(spawn_outcome)
    assert outcome == "ready", f"the second spawn of {USER} showed an error page too"


def open_jupyterlab(driver: Any, url: str, tries: int = 3) -> None:
    """JupyterLab with a fresh workspace (?reset) until its launcher shows; reloads like a person
    would when the first load, right after the spawn, stays blank."""
    from selenium.common.exceptions import TimeoutException

    for attempt in range(tries):
        visit(driver, url)
        try:
            wait_for(driver, ".jp-LauncherCard[data-category='Other']", 90)
            return
        except TimeoutException:
            if attempt == tries - 1:
                raise


def on_hub(hub: LabHub, script: str) -> str:
    """A command on the hub machine as the site's SSH user, its output."""
    host, site = hub.site.hub_host, hub.site
    done = subprocess.run(
        ["ssh", "-i", str(host.key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-p", str(host.port),
         "-o", f"UserKnownHostsFile={site.ssh.known_hosts}", f"{host.user}@{host.address}", script],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    return done.stdout.strip()


def server_node(hub: LabHub, user: str) -> str:
    """The Swarm node running the user's server (found by the JUPYTERHUB_USER its spawner set)."""
    return on_hub(hub, (
        "for s in $(docker service ls -q); do "
        f"docker service inspect $s --format '{{{{json .Spec.TaskTemplate.ContainerSpec.Env}}}}' "
        f"| grep -q '\"JUPYTERHUB_USER={user}\"' "
        "&& docker service ps $s --filter desired-state=running --format '{{.Node}}'; done"))


def hub_log(hub: LabHub) -> str:
    """The hub service's last log lines and the state of every service's tasks: evidence of a
    failed step (sudo -n: the lab's sudo needs no password for the site's user, or says so)."""
    docker = "docker" if hub.site.hub_host.user == "root" else "sudo -n docker"
    try:
        # the hub dumps a failed request's headers, one per line: left out
        return on_hub(hub, f"{docker} service logs --no-trunc --tail 300 {HUB_SERVICE} 2>&1 "
                           "| grep -vE '[|] +\"[A-Za-z-]+\": ' | tail -40 | cut -c1-400; "
                           f"{docker} service ls 2>&1; "
                           f"{docker} service ps --no-trunc --format '{{{{.Name}}}} {{{{.Node}}}} "
                           f"{{{{.CurrentState}}}} {{{{.Error}}}}' $({docker} service ls -q) 2>&1 | tail -20")
    except subprocess.SubprocessError as exc:
        return f"(could not read it: {exc})"


@pytest.fixture(scope="module")
def hub(request: pytest.FixtureRequest) -> LabHub:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("chromium and chromium-driver are not installed (scripts/setup.sh installs them)")
    pytest.importorskip("selenium")
    return lab_hub(request)


def test_a_student_logs_in_works_in_jupyterlab_on_a_worker_and_logs_out(hub: LabHub, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    with chromium(hub, tmp_path / "profile") as driver:
        step = Steps(driver, tmp_path, lambda: hub_log(hub))
        step("open-site", lambda: visit(driver, hub.url + "/"))
        step("login-page", lambda: wait_url(driver, "/hub/login", 60))
        step("sign-in-button", lambda: wait_for(driver, 'a[href*="oauth_login"]').click())
        step("provider-form", lambda: wait_url(driver, hub.site.oauth.authorize_url or "", 60))
        field = step("provider-sub-field", lambda: wait_for(driver, 'input[name="sub"]'))
        field.send_keys(USER)
        step("authorize", lambda: field.submit())
        # The hub spawns the server right after login (image pre-pulled on the workers).
        step("server-started", lambda: wait_for_server(driver, step, hub))
        step("jupyterlab-launcher", lambda: open_jupyterlab(driver, f"{hub.url}/user/{USER}/lab?reset"))

        node = server_node(hub, USER)
        assert node in [n.name for n in hub.site.nodes], f"{USER}'s server runs on {node!r}, not on a worker"

        terminal = step("terminal-card", lambda: driver.find_element(
            By.CSS_SELECTOR, ".jp-LauncherCard[data-category='Other'][title*='erminal']"))
        terminal.click()
        step("terminal-open", lambda: wait_for(driver, ".jp-Terminal .xterm-screen", 60).click())
        lab_tab = driver.current_window_handle
        command = f"echo {MARK} > browser-test.txt && hostname >> browser-test.txt" + Keys.ENTER

        def file_written() -> dict:
            """Type in the terminal, read the file back through the server's contents API in a
            second tab; type again if the shell was not ready for the first keys (xterm draws on a
            canvas: its prompt cannot be read from the page)."""
            text = ""
            for _attempt in range(3):
                driver.switch_to.window(lab_tab)
                time.sleep(3)  # the terminal's websocket opens after its tab shows
                driver.switch_to.active_element.send_keys(command)
                driver.switch_to.new_window("tab")
                for _ in range(15):
                    visit(driver, f"{hub.url}/user/{USER}/api/contents/browser-test.txt?content=1")
                    text = driver.find_element(By.TAG_NAME, "body").text
                    if text.startswith("{") and MARK in text:
                        driver.close()
                        driver.switch_to.window(lab_tab)
                        return json.loads(text)
                    time.sleep(1)
                driver.close()
            raise AssertionError(f"browser-test.txt does not say {MARK!r}: {text[:300]}")

        saved = step("file-written", file_written)
        assert saved["content"].startswith(MARK)

        # The student stops their server from the hub's home page (the lab stays clean for other tests).
        step("hub-home", lambda: visit(driver, f"{hub.url}/hub/home"))
        step("stop-button", lambda: wait_for(driver, "#stop", 60))
        step("server-stopped", lambda: stop_server(driver))
        step("logout", lambda: visit(driver, f"{hub.url}/hub/logout"))
        step("logged-out", lambda: wait_url(driver, "/hub/login", 60))
        visit(driver, f"{hub.url}/hub/home")
        step("home-needs-login", lambda: wait_url(driver, "/hub/login", 30))
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
