"""The support console in headless Chromium, against the real Procfile web and worker.

A LionDesk outage fails a new lead's job; support logs in, finds the failed job, the
outage lifts, support replays it from the page and the lead's story shows it processed,
with exactly one contact in LionDesk. In a second outage leads wait on the retry ladder:
the banner says LionDesk is failing, the Retrying page lists them, support runs one now
and the rest after a confirmation, reads the lead's summary and the deliveries log. The
screenshots the README shows (desktop and phone widths) are taken here.
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


def start_web(processes, settings, sandbox, **extra):
    """Start the Procfile's web process with the console on (credentials generated here); return (url, username, password)."""
    username, password = "support", secrets.token_urlsafe(16)
    port = free_port()
    web = processes.start("web", procfile_command("web"), process_env(
        settings, PORT=str(port), WEB_CONCURRENCY="1", ADMIN_USERNAME=username, ADMIN_PASSWORD=password,
        SECRET_KEY=secrets.token_hex(32), **{"BRIDGE_RETRY_INTERVALS": "1", **extra}, **sandbox_env(sandbox)))
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(f"{url}/healthz") or web.poll() is not None, timeout=30, message="web up")
    assert web.poll() is None, processes.log_of("web")
    return url, username, password


@pytest.fixture
def bridge_web(processes, settings, sandbox):
    """The Procfile's web process with the console on; yields (url, username, password)."""
    return start_web(processes, settings, sandbox)


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

    _log_in(chromium, url, username, password)
    assert chromium.find_element(By.ID, "queue-failed").get_attribute("data-count") == "1", chromium.page_source
    assert chromium.find_element(By.ID, "outcome-failed").text.split() == ["failed", "1", "1"]
    assert chromium.find_element(By.ID, "chart").get_attribute("data-failed") == "1"

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


def test_support_connects_liondesk_from_the_console(chromium, bridge_web, redis_conn, sandbox):
    from selenium.webdriver.common.by import By

    from bridge.clients.oauth import OK, auth_state

    url, username, password = bridge_web
    chromium.get(f"{url}/admin/liondesk/connect")  # the console login comes first
    assert "/admin/login" in chromium.current_url
    chromium.get(f"{url}/admin/")
    chromium.find_element(By.ID, "username").send_keys(username)
    chromium.find_element(By.ID, "password").send_keys(password)
    _submit(chromium, chromium.find_element(By.ID, "login-button"))
    # The overview's link; LionDesk's (the sandbox's) authorize page approves at once and sends the browser
    # back with code and state. (A link, not the login form's redirect: form-action 'self' would stop that.)
    chromium.find_element(By.ID, "liondesk-connect-link").click()
    result = wait_until(lambda: chromium.find_elements(By.ID, "connect-result"), timeout=PAGE_WAIT_SECONDS,
                        message="the connect result")[0]
    assert "/admin/liondesk/callback" in chromium.current_url
    assert result.text.startswith("Connected: LionDesk user 1"), chromium.page_source
    assert auth_state(redis_conn)["state"] == OK and auth_state(redis_conn)["authorized_at"]
    authorize = [c for c in sandbox.calls() if c["path"].endswith("/oauth2/authorize")]
    assert authorize and "state=" in authorize[-1]["query"] and "scope=write+read" in authorize[-1]["query"]
    # A callback with a state we did not hand out is refused.
    chromium.get(f"{url}/admin/liondesk/callback?code=sandbox-code&state=forged")
    assert "does not belong to a connection started here" in chromium.page_source


def test_support_sees_waiting_leads_and_runs_them_now(chromium, processes, settings, redis_conn, sandbox):
    from rq.registry import ScheduledJobRegistry
    from selenium.webdriver.common.by import By

    from bridge.sandbox.sample import sample_lead
    from bridge.storage import history
    from bridge.queue import event_queue

    ladder = {"BRIDGE_RETRY_INTERVALS": "600,600"}  # long enough that the waiting leads wait for support
    url, username, password = start_web(processes, settings, sandbox, BRIDGE_TIMEZONE="Pacific/Honolulu", **ladder)
    start_worker(processes, settings, **ladder, **sandbox_env(sandbox))
    early = sample_lead(rng=random.Random(3), first_name="Leilani", last_name="Kealoha")  # delivered before the outage
    assert signed_post(requests, f"{url}/webhooks/realgeeks", early, settings.realgeeks_webhook_secret).ok
    wait_until(lambda: "processed" in [e["kind"] for e in history.read(redis_conn, early["id"])], timeout=30,
               message="the first lead to be delivered")
    sandbox.control("POST", "faults", service="liondesk", outage=True)
    leads = [sample_lead(rng=random.Random(seed), first_name=first, last_name=last, email=f"{first.lower()}@example.com")
             for seed, first, last in ((1, "Kai", "Akana"), (2, "Mele", "Kahale"))]
    for payload in leads:
        assert signed_post(requests, f"{url}/webhooks/realgeeks", payload,
                           settings.realgeeks_webhook_secret).status_code in (200, 202)
    invalid = {"action": "created", "id": "bad-1", "first_name": "Noa", "last_name": "Pua", "email": "not-an-email"}
    assert signed_post(requests, f"{url}/webhooks/realgeeks", invalid, settings.realgeeks_webhook_secret).ok
    scheduled = ScheduledJobRegistry(event_queue(redis_conn).name, connection=redis_conn)
    wait_until(lambda: scheduled.count == 2, timeout=30, message="both leads to wait on the retry ladder")

    _log_in(chromium, url, username, password)
    notice = chromium.find_element(By.CSS_SELECTOR, "#banner [data-kind=liondesk_failing]")
    assert notice.get_attribute("data-count") == "2" and "LionDesk is failing: 2 leads waiting" in notice.text
    assert "HST" in notice.text  # since when, in BRIDGE_TIMEZONE
    chart = chromium.find_element(By.ID, "chart")
    assert (chart.get_attribute("data-delivered"), chart.get_attribute("data-failed")) == ("1", "0")
    _screenshot(chromium, "overview")
    _screenshot(chromium, "overview-phone", width=PHONE_WIDTH)

    _submit(chromium, chromium.find_element(By.ID, "nav-retrying"))
    rows = chromium.find_elements(By.CSS_SELECTOR, "#retrying-jobs tbody tr")
    assert len(rows) == 2 and {row.get_attribute("data-outcome") for row in rows} == {"retrying"}
    assert "UpstreamUnavailable" in rows[0].text and "HST" in rows[0].find_element(By.CSS_SELECTOR, ".next-attempt").text
    _screenshot(chromium, "retrying")
    _screenshot(chromium, "retrying-phone", width=PHONE_WIDTH)

    # LionDesk is back: run the first lead now from its row, and watch its page until it is delivered.
    sandbox.control("POST", "faults", service="liondesk", outage=None)
    first = next(row for row in rows if "Kai Akana" in row.text)
    _submit(chromium, first.find_element(By.CSS_SELECTOR, "button.run-one"))
    assert "1 job due now" in chromium.find_element(By.ID, "flash").text
    chromium.get(f"{url}/admin/leads/{leads[0]['id']}")
    wait_until(lambda: _summary_state(chromium) == "delivered", timeout=30, interval=0.3,
               message="the lead run now to be delivered")
    kinds = [entry["kind"] for entry in history.read(redis_conn, leads[0]["id"])]
    assert kinds.index("attempt_failed") < kinds.index("retried_now") < kinds.index("processed")
    contact = next(c for c in sandbox.control("GET", "liondesk/contacts")["data"] if c["email"] == leads[0]["email"])
    assert chromium.find_element(By.ID, "contact-link").text == str(contact["id"])
    assert chromium.find_elements(By.CSS_SELECTOR, "#timeline details.calls"), "calls fold under their step"
    _screenshot(chromium, "lead-summary")
    _screenshot(chromium, "lead-summary-phone", width=PHONE_WIDTH)

    # The rest in bulk: the page says what will run and asks first.
    _submit(chromium, chromium.find_element(By.ID, "nav-retrying"))
    _submit(chromium, chromium.find_element(By.ID, "run-all"))
    assert chromium.find_element(By.ID, "confirm").get_attribute("data-total") == "1"
    assert scheduled.count == 1  # asking ran nothing
    _screenshot(chromium, "bulk-confirm")
    _screenshot(chromium, "bulk-confirm-phone", width=PHONE_WIDTH)
    _submit(chromium, chromium.find_element(By.ID, "confirm-button"))
    assert "1 job due now" in chromium.find_element(By.ID, "flash").text
    wait_until(lambda: "processed" in [e["kind"] for e in history.read(redis_conn, leads[1]["id"])], timeout=30,
               message="the second lead to be delivered")

    _submit(chromium, chromium.find_element(By.ID, "nav-deliveries"))
    outcomes = [row.get_attribute("data-outcome") for row in chromium.find_elements(By.CSS_SELECTOR, "#deliveries tbody tr")]
    assert outcomes == ["rejected", "queued", "queued", "queued"]
    rejected = chromium.find_element(By.CSS_SELECTOR, "#deliveries tr[data-outcome=rejected]")
    assert "Noa Pua" in rejected.text and "Email: Not a valid email address." in rejected.text
    _screenshot(chromium, "deliveries")
    _screenshot(chromium, "deliveries-phone", width=PHONE_WIDTH)
    assert not chromium.find_elements(By.CSS_SELECTOR, "#banner [data-kind=liondesk_failing]")


def _log_in(driver, url: str, username: str, password: str) -> None:
    """Log in with the real form (the page's own CSRF token goes along with it)."""
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/admin/")
    assert "/admin/login" in driver.current_url
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    _submit(driver, driver.find_element(By.ID, "login-button"))


def _summary_state(driver) -> str:
    """Reload the lead page; return the state its summary reads."""
    from selenium.webdriver.common.by import By

    driver.refresh()
    return driver.find_element(By.ID, "summary").get_attribute("data-state")


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
    kinds = [entry.get_attribute("data-kind") for entry in driver.find_elements(By.CSS_SELECTOR, "#timeline > li")]
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
