"""The support console in headless Chromium, against the real Procfile web and worker.

A LionDesk outage fails a new lead's job; support logs in, finds the failed job, the
outage lifts, support replays it from the page and the lead's story shows it processed,
with exactly one contact in LionDesk. The screenshots the README shows are taken here.
"""

from __future__ import annotations

import base64
import math
import random
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest
import requests

from tests.support import ROOT, free_port, procfile_command, signed_post, wait_until
from tests.test_worker import _answers, process_env, processes, sandbox_env, start_worker  # noqa: F401 (fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
"""Debian's chromium and chromium-driver packages; named explicitly so Selenium never tries to download a driver."""

SCREENSHOTS = ROOT / "docs" / "screenshots"
DESKTOP = (1280, 900)
PHONE_WIDTH = 390
"""Window sizes of the screenshots: a laptop, and a phone's width in CSS pixels."""

PAGE_WAIT_SECONDS = 15


@pytest.fixture
def chromium():
    """A headless Chromium driven through Debian's chromedriver; quit at the end."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: the console's browser test needs Debian's Chromium. "
                    "Install it with `apt-get install chromium chromium-driver` (.ci/run does).", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="bridge-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--hide-scrollbars", "--force-device-scale-factor=1",
                 f"--window-size={DESKTOP[0]},{DESKTOP[1]}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(PAGE_WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()  # stops the chromedriver and the Chromium it started
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def bridge_web(processes, settings, sandbox):
    """The Procfile's web process with the console on (credentials generated here); yields (url, username, password)."""
    username, password = "support", secrets.token_urlsafe(16)
    port = free_port()
    web = processes.start("web", procfile_command("web"), process_env(
        settings, PORT=str(port), WEB_CONCURRENCY="1", ADMIN_USERNAME=username, ADMIN_PASSWORD=password,
        SECRET_KEY=secrets.token_hex(32), BRIDGE_RETRY_INTERVALS="1", **sandbox_env(sandbox)))
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(f"{url}/healthz") or web.poll() is not None, timeout=30, message="web up")
    assert web.poll() is None, processes.log_of("web")
    return url, username, password


def test_support_replays_a_job_failed_by_a_liondesk_outage(chromium, bridge_web, processes, settings, redis_conn,
                                                           sandbox):
    from rq.registry import FailedJobRegistry
    from selenium.webdriver.common.by import By

    from bridge.sandbox.sample import sample_lead
    from bridge.storage import history
    from bridge.queue import event_queue

    url, username, password = bridge_web
    start_worker(processes, settings, BRIDGE_RETRY_INTERVALS="1", **sandbox_env(sandbox))
    sandbox.control("POST", "faults", service="liondesk", outage=True)
    payload = sample_lead(rng=random.Random(808), first_name="Leilani", last_name="Kealoha",
                          email="leilani.kealoha@example.com", phone="808-555-0142")
    response = signed_post(requests, f"{url}/webhooks/realgeeks", payload, settings.realgeeks_webhook_secret)
    assert response.status_code == 200, response.text
    failed = FailedJobRegistry(event_queue(redis_conn).name, connection=redis_conn)
    wait_until(lambda: failed.get_job_ids(), timeout=30, message="the job to reach the failed store")
    assert _kinds(history, redis_conn, payload["id"]).count("attempt_failed") == 2  # the attempt and its one retry

    # Log in with the real form: the page's own CSRF token goes along with it.
    chromium.get(f"{url}/admin/")
    assert "/admin/login" in chromium.current_url
    chromium.find_element(By.ID, "username").send_keys(username)
    chromium.find_element(By.ID, "password").send_keys(password)
    _submit(chromium, chromium.find_element(By.ID, "login-button"))
    assert chromium.find_element(By.ID, "queue-failed").get_attribute("data-count") == "1", chromium.page_source
    assert chromium.find_element(By.ID, "outcome-failed").text.split() == ["failed", "1", "1"]
    _screenshot(chromium, "overview")
    _screenshot(chromium, "overview-phone", width=PHONE_WIDTH)

    _submit(chromium, chromium.find_element(By.ID, "nav-failed"))
    (row,) = chromium.find_elements(By.CSS_SELECTOR, "#failed-jobs tbody tr")
    job_id = row.get_attribute("data-job-id")
    assert row.find_element(By.CSS_SELECTOR, "[data-label=Lead]").text == "Leilani Kealoha"
    assert row.find_element(By.CSS_SELECTOR, "[data-label=Action]").text == "created"
    error = row.find_element(By.CSS_SELECTOR, "[data-label=Error]")
    assert error.find_element(By.TAG_NAME, "strong").text == "UpstreamUnavailable" and "503" in error.text
    assert row.find_element(By.CSS_SELECTOR, "[data-label=Attempts]").text == "2"
    _screenshot(chromium, "failed-jobs")

    # LionDesk is back; replay the job from the page and watch the lead's story until it is processed.
    sandbox.control("POST", "faults", service="liondesk", outage=None)
    row.find_element(By.CSS_SELECTOR, f"input[name=job_id][value='{job_id}']").click()
    _submit(chromium, chromium.find_element(By.ID, "replay-selected"))
    assert "Replayed 1 job with a fresh retry budget." in chromium.find_element(By.ID, "flash").text
    assert not chromium.find_elements(By.CSS_SELECTOR, f"tr[data-job-id='{job_id}']")

    _submit(chromium, chromium.find_element(By.ID, "nav-leads"))
    chromium.find_element(By.ID, "q").send_keys(payload["email"])
    _submit(chromium, chromium.find_element(By.ID, "search-button"))
    assert chromium.find_element(By.ID, "lead").get_attribute("data-lead-id") == payload["id"]
    kinds = wait_until(lambda: _story_kinds(chromium), timeout=30, interval=0.3,
                       message="the lead's story to show the replayed job processed")
    assert kinds[0] == "received" and kinds.index("replayed") < kinds.index("processed")
    (contact,) = sandbox.control("GET", "liondesk/contacts")["data"]
    assert contact["email"] == payload["email"]
    assert chromium.find_element(By.ID, "mapping-contact").text == str(contact["id"])
    _screenshot(chromium, "lead-story")


def _submit(driver, element) -> None:
    """Click a link or submit button and wait until the browser has left the page it was on."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    page = driver.find_element(By.TAG_NAME, "html")
    try:
        element.click()
    except WebDriverException:
        if not _gone(page):  # else chromedriver only lost the page it clicked on to the navigation we want
            raise
    wait_until(lambda: _gone(page), timeout=PAGE_WAIT_SECONDS, message="the browser to load the next page")


def _gone(element) -> bool:
    """Whether `element` no longer belongs to the page the browser shows."""
    from selenium.common.exceptions import WebDriverException

    try:
        element.tag_name
    except WebDriverException:
        # Stale, or chromedriver's "Node with given id does not belong to the document":
        # both say the element's document was replaced.
        return True
    return False


def _kinds(history, conn, lead_id: str) -> list[str]:
    """The kinds of a lead's history entries, oldest first."""
    return [entry["kind"] for entry in history.read(conn, lead_id)]


def _story_kinds(driver) -> list[str] | None:
    """Reload the lead page; return its timeline's kinds once the last one is `processed`, else None."""
    from selenium.webdriver.common.by import By

    driver.refresh()
    kinds = [entry.get_attribute("data-kind") for entry in driver.find_elements(By.CSS_SELECTOR, "#timeline li")]
    return kinds if kinds[-1:] == ["processed"] else None


def _screenshot(driver, name: str, width: int = DESKTOP[0]) -> None:
    """Save the whole page, laid out `width` CSS pixels wide, as docs/screenshots/<name>.png."""
    from selenium.webdriver.common.by import By

    def lay_out(height: int) -> None:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width <= PHONE_WIDTH})

    try:
        lay_out(DESKTOP[1])
        lay_out(math.ceil(driver.find_element(By.TAG_NAME, "html").rect["height"]))  # the page, no blank below it
        image = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})["data"]
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / f"{name}.png").write_bytes(base64.b64decode(image))
