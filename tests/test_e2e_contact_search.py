"""The duplicate search before a contact is created, end to end, under each reading of Feathers `$or`.

The Procfile's gunicorn `web`, worker processes, a real Redis and the sandbox in its own process
(the stack of tests/test_e2e_sync.py). LionDesk does not document `$or`: the sandbox honours it
as Feathers does, refuses it with 400, or ignores it (answering as if unfiltered). Under each, a
lead must link the contact it matches (by office phone; by e-mail) and a lead matching nothing
must make exactly one new contact; only the number of searches may differ.
"""

from __future__ import annotations

import secrets

import pytest

from bridge.sandbox.sample import sample_lead
from bridge.storage import history, keys
from tests.test_e2e_sync import stack  # noqa: F401 - the module's processes

pytestmark = pytest.mark.e2e

BULK = 150
"""Contacts the account holds besides the test's own: more than one page (100) of an unfiltered answer."""


@pytest.fixture
def e2e(stack):  # noqa: F811 - the imported module fixture
    """The stack, reset, with the bridge's contact-search record forgotten too."""
    stack.reset()
    stack.conn.delete(keys.liondesk_contact_search())
    yield stack


def phone() -> tuple[str, str]:
    """A fresh Honolulu number as a lead types it and as an agent stored it on the office line."""
    digits = f"808{secrets.randbelow(8_000_000) + 2_000_000}"
    return f"{digits[:3]}-{digits[3:6]}-{digits[6:]}", f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"


def searches(e2e, since: int) -> list[dict]:
    """The GET /contacts calls after `since`, with whether each was an `$or` search."""
    return [{**call, "or": "%24or" in call["query"] or "$or" in call["query"]}
            for call in e2e.calls(since) if call["template"] == "/liondesk/contacts" and call["method"] == "GET"]


def linked(e2e, lead_id) -> dict:
    """The lead's contact_linked story entry."""
    (entry,) = [e for e in history.read(e2e.conn, lead_id) if e["kind"] == "contact_linked"]
    return entry


def process(e2e, payload) -> int:
    """Deliver one lead and wait for it; return the call-log sequence number it started after."""
    since = e2e.sandbox.last_seq()
    e2e.deliver(payload)
    e2e.wait_processed({payload["id"]: 1})
    return since


@pytest.mark.parametrize("reading", ["honoured", "refused", "ignored"])
def test_the_right_contact_is_linked_and_none_is_duplicated_however_liondesk_reads_or(e2e, reading):
    e2e.sandbox.control("POST", "settings", or_operator=reading)
    # More contacts than one page: an answer that ignored the $or cannot hold them all.
    e2e.sandbox.control("POST", "liondesk/bulk-contacts", count=BULK)
    stranger = e2e.sandbox.control("POST", "liondesk/contacts", first_name="Zed", email="zed@example.com",
                                   mobile_phone="(415) 555-0101")
    first = sample_lead()  # no contact of the bridge yet: no anchor, one search per field
    process(e2e, first)
    assert len(e2e.contacts()) == BULK + 2

    typed, stored = phone()
    office = e2e.sandbox.control("POST", "liondesk/contacts", first_name="Office", office_phone=stored)
    by_office = sample_lead(phone=typed)  # its e-mail matches nobody: the office line must be found
    since = process(e2e, by_office)
    assert linked(e2e, by_office["id"])["contact_id"] == office["id"]
    assert linked(e2e, by_office["id"])["matched_by"] == "office_phone"
    calls = searches(e2e, since)
    if reading == "honoured":
        assert [c["or"] for c in calls] == [True]
    else:  # the $or is tried once, refused (400) or caught answering unasked contacts, then field by field
        assert [c["or"] for c in calls] == [True, False, False, False, False]
        assert calls[0]["status"] == (400 if reading == "refused" else 200)

    email_owner = e2e.sandbox.control("POST", "liondesk/contacts", first_name="Mail", email="mele.kai@example.com")
    by_email = sample_lead(email="Mele.Kai@Example.com", phone=phone()[0])
    since = process(e2e, by_email)
    assert (linked(e2e, by_email["id"])["contact_id"], linked(e2e, by_email["id"])["matched_by"]) == \
        (email_owner["id"], "email")
    if reading != "honoured":  # remembered: straight to the field searches (the e-mail one finds it)
        assert [c["or"] for c in searches(e2e, since)] == [False]

    newcomer = sample_lead(phone=phone()[0])
    since = process(e2e, newcomer)
    contacts = e2e.contacts()
    assert len(contacts) == BULK + 5  # the bulk ones, the stranger, the first lead's, Office, Mail and the newcomer's: no duplicate
    emails = [str(c.get("email") or "").lower() for c in contacts]
    for lead in (first, by_office, newcomer):  # by_office's e-mail was written onto Office's contact
        assert emails.count(lead["email"].lower()) == 1, lead["email"]
    assert [c["or"] for c in searches(e2e, since)] == ([True] if reading == "honoured" else [False] * 4)
    assert stranger["id"] not in {linked(e2e, lead["id"])["contact_id"] for lead in (by_office, by_email)}
