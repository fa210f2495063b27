"""No log line carries a token, a secret or an unmasked email or phone number:
checked on every record logged through a real webhook, the relay and a failing job."""

import io
import logging

import pytest

from bridge.exceptions import UpstreamRejected
from bridge.ops import logs
from tests.ops_support import deliver, raising, run_jobs

EMAIL, PHONE = "leilani.kealoha@example.com", "808-555-0142"
ACCESS_TOKEN, REFRESH_TOKEN = "ld-access-3f9a8b7c6d5e4f30", "ld-refresh-a1b2c3d4e5f60718"


def leaky_failure() -> UpstreamRejected:
    """An upstream refusal whose message quotes personal data and credentials, as careless code might."""
    return UpstreamRejected(
        f"LionDesk 422 for {EMAIL} / {PHONE}: Authorization: Bearer {ACCESS_TOKEN} "
        f"refresh_token={REFRESH_TOKEN}", service="liondesk", status=422)


def forbidden(webhook_secret):
    """Strings that must never appear in a log line."""
    return [EMAIL, PHONE, "8085550142", ACCESS_TOKEN, REFRESH_TOKEN, webhook_secret]


def rendered(record: logging.LogRecord) -> str:
    """A record as a handler would write it, traceback included."""
    return logging.Formatter("%(name)s %(message)s").format(record)


@pytest.fixture
def bridge_log():
    """The output of the handler `logs.configure()` installs, captured in memory."""
    stream = io.StringIO()
    logs.configure()
    (handler,) = [h for h in logging.getLogger().handlers if getattr(h, "_bridge", False)]
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


def test_webhook_and_job_records_hold_no_secret_or_personal_data(
        caplog, client, redis_conn, settings, webhook_secret, monkeypatch):
    caplog.set_level(logging.DEBUG)
    lead = deliver(client, webhook_secret, email=EMAIL, phone=PHONE)
    run_jobs(settings, redis_conn, monkeypatch, raising(leaky_failure()))

    lines = [rendered(record) for record in caplog.records]
    assert any('"kind":"webhook"' in line and lead["id"] in line for line in lines)
    assert any('"kind":"job"' in line and '"outcome":"failed"' in line for line in lines)
    assert any(line.startswith("rq.worker") and "UpstreamRejected" in line for line in lines)
    for line in lines:
        for secret in forbidden(webhook_secret):
            assert secret not in line, f"{secret!r} leaked in: {line[:300]}"


def test_what_reaches_the_log_output_holds_no_secret_or_personal_data(
        bridge_log, client, redis_conn, settings, webhook_secret, monkeypatch):
    deliver(client, webhook_secret, email=EMAIL, phone=PHONE)
    run_jobs(settings, redis_conn, monkeypatch, raising(leaky_failure()))

    output = bridge_log.getvalue()
    assert '"kind":"webhook"' in output and '"kind":"job"' in output and "Traceback" in output
    assert "l***@e***.com" in output and "***42" in output  # masked, still recognisable to support
    for secret in forbidden(webhook_secret):
        assert secret not in output


@pytest.mark.parametrize("text, hidden", [
    ("Authorization: Bearer abc.def-123", "abc.def-123"),
    ("refresh_token=r123456&grant_type=refresh_token", "r123456"),
    ('{"access_token": "tok987654", "expires_in": 3600}', "tok987654"),
    ("client_secret: s3cr3tvalue", "s3cr3tvalue"),
])
def test_scrub_hides_credentials_inside_text(text, hidden):
    assert hidden not in logs.scrub(text)


def test_dates_and_times_are_not_mistaken_for_phone_numbers():
    from bridge.ops.logs import scrub

    text = "at 2026-11-22 06:32:04,123 called 808-817-2382; created 2015-10-01T06:14:01.632792Z"
    assert scrub(text) == "at 2026-11-22 06:32:04,123 called ***82; created 2015-10-01T06:14:01.632792Z"


@pytest.mark.parametrize("value", ["created", "queued", "user_updated", "0123456789abcdef", "abc_123"])
def test_plain_words_pass_unchanged(value):
    """Words with a non-digit cannot hold an email, a phone or a credential; they skip the maskers."""
    assert logs.scrub(value) == value


@pytest.mark.parametrize("value", ["8085550142", "+18085550142", "id 808-555-0142", "x:808-555-0142",
                                   f"mail {EMAIL}", f"token={ACCESS_TOKEN}"])
def test_anything_else_is_still_masked(value):
    """Digits alone, or text around a phone, an email or a credential, still go through every masker."""
    masked = logs.scrub(value)
    assert masked != value
    assert not any(secret in masked for secret in (EMAIL, ACCESS_TOKEN, "808-555-0142", "8085550142"))


def test_identifiers_are_logged_verbatim_even_when_all_digits():
    """An event id that happens to be all digits is an id support searches by, not a phone number."""
    facts = logs.scrub({"event_id": "01951234567812345678", "lead_id": "98765432", "note": "call 8085550142"})
    assert facts["event_id"] == "01951234567812345678"
    assert facts["lead_id"] == "98765432"
    assert "8085550142" not in facts["note"]


def test_identifier_fields_holding_text_are_still_masked():
    """Only a single token counts as an identifier: an email under an *_id name is masked."""
    assert EMAIL not in logs.scrub({"user_id": f"{EMAIL} "})["user_id"]


HOSTILE_LENGTH = 300_000
"""Characters of each hostile value below: linear maskers take milliseconds over it; the
quadratic ones (an 8,000-letter value took 2-3 s) would take about an hour."""


def test_masking_long_runs_without_a_match_takes_linear_time():
    """A hostile lead's long field cannot freeze a worker in the log maskers.

    Run in a child process bounded far above what linear time needs (bench/masking.py
    measures the growth itself); the masked text is checked too, so the patterns that
    avoid the rescans still mask what they must.
    """
    import subprocess
    import sys
    import textwrap

    program = textwrap.dedent(f"""
        from bridge.ops import logs
        n = {HOSTILE_LENGTH}
        for text in ("a" * n, "a" * n + "@", "token" * (n // 5), "1" * n + "a", "x-" * (n // 2), "a" * n + " "):
            for mask in (logs.mask_email, logs.mask_credentials, logs.mask_phone, logs.scrub):
                assert mask(text) == text, mask.__name__
        tail = " mail leilani.kealoha@example.com token=tok987654"
        assert logs.scrub("a" * n + tail).endswith(" mail l***@e***.com token=[redacted]")
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.mark.parametrize("text, masked", [
    ("reach me at leilani.kealoha@example.com!", "reach me at l***@e***.com!"),
    ("a+b@x.io and c@d.org", "a***@x***.io and c***@d***.org"),
    ("my_api_key=abc123; user_key: 'zz9'", "my_api_key=[redacted]; user_key: '[redacted]'"),
    ("X-Access-Token=abc", "X-Access-Token=[redacted]"),
])
def test_anchored_patterns_mask_what_they_did_before(text, masked):
    """The maskers start only at the start of a run of their characters; a match never started inside one."""
    assert logs.mask_phone(logs.mask_email(logs.mask_credentials(text))) == masked
