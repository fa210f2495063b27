"""The sandbox's state file: a restarted sandbox is the same LionDesk (records and rotated tokens)."""

from __future__ import annotations

from bridge.sandbox.server import StateFile, create_sandbox_app
from bridge.sandbox.tokens import CLIENT_ID, CLIENT_SECRET, INITIAL_REFRESH_TOKEN


def refresh(client, token):
    return client.post("/liondesk/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": token,
                                                        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})


def test_a_restarted_sandbox_keeps_its_records_and_rotated_tokens(tmp_path):
    store = StateFile(tmp_path / "sandbox.pickle")
    first = create_sandbox_app(state_file=store).test_client()
    answer = refresh(first, INITIAL_REFRESH_TOKEN)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    rotated = answer.get_json()["refresh_token"]
    created = first.post("/_sandbox/liondesk/contacts", json={"first_name": "Kai", "email": "kai@example.com"})
    assert created.status_code in (200, 201), created.get_data(as_text=True)
    assert (tmp_path / "sandbox.pickle").stat().st_mode & 0o077 == 0

    second = create_sandbox_app(state_file=store).test_client()
    assert [c["first_name"] for c in second.get("/_sandbox/liondesk/contacts").get_json()["data"]] == ["Kai"]
    assert refresh(second, INITIAL_REFRESH_TOKEN).status_code == 400  # rotated away, as before the restart
    assert refresh(second, rotated).status_code == 200


def test_without_a_file_the_sandbox_starts_fresh(tmp_path):
    app = create_sandbox_app(state_file=StateFile(tmp_path / "missing.pickle"))
    assert app.test_client().get("/_sandbox/liondesk/contacts").get_json()["data"] == []
