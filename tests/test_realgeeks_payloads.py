"""Every real-format payload gathered from Real Geeks' public material (tests/data/realgeeks/, sources in its
README) is accepted end to end — intake, relay, worker, sandbox — and nothing in it is dropped."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from bridge.storage import events, history
from bridge.translate.realgeeks import DROPPED, load_event, normalize_id
from tests.support import signed_post
from tests.test_sync import URL, bridge  # noqa: F401 - the fixture

DATA = Path(__file__).parent / "data" / "realgeeks"
PAYLOADS = sorted(path.name for path in DATA.glob("*.json"))


def test_the_table_covers_every_file_and_every_file_has_its_source():
    readme = (DATA / "README.md").read_text()
    assert len(PAYLOADS) >= 12
    for name in PAYLOADS:
        assert f"`{name}`" in readme, f"{name} has no source in tests/data/realgeeks/README.md"


def test_the_receivers_fixture_is_byte_exact_and_signed_as_published():
    raw = (DATA / "recv_new_lead.json").read_bytes()
    signed = raw.rstrip(b"\n")  # the receiver's spec reads it with .strip
    assert len(signed) == 970
    expected = (DATA / "recv_new_lead.signature").read_text().strip()
    assert hmac.new(b"seekrit", signed, hashlib.sha256).hexdigest() == expected


@pytest.mark.parametrize("name", PAYLOADS)
def test_a_real_format_payload_is_accepted_and_nothing_is_dropped(bridge, redis_conn, name):  # noqa: F811
    body = (DATA / name).read_bytes().rstrip(b"\n")
    payload = json.loads(body)
    action = payload["action"]
    assert DROPPED not in load_event(action, payload)

    response = signed_post(bridge.client, URL, None, bridge.secret, body=body)  # the exact bytes
    assert response.status_code in (200, 202) and response.json["status"] == "queued", response.json
    bridge.work()
    assert events.list_rejected(redis_conn) == []
    if action == "user_updated":
        return
    story = history.read(redis_conn, normalize_id(payload["id"]))
    kinds = [entry["kind"] for entry in story]
    assert "processed" in kinds and "attempt_failed" not in kinds and "fields_dropped" not in kinds, story
