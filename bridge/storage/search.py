"""The lead search index: one Redis set of Real Geeks lead ids per search token (an e-mail,
phone or name), the one owner of its format. Written by the intake in the same atomic call
that stores a delivery (bridge/intake/store.py), read by support's search (bridge/ops/leads.py).

Tokens are hashed before they become key names, so e-mails and phone numbers never show up
in key listings or monitoring tools; the lead's history and events stay the place personal
data lives. An old e-mail or phone keeps finding the lead after it changed: support searches
with what the customer tells them, which is often the old value.
"""

from __future__ import annotations

import hashlib
import re

from bridge import defaults
from bridge.storage import keys
from bridge.storage.redis import text
from bridge.translate.text import folded, folded_words

EMAIL_FIELDS = ("email", "second_email")
PHONE_FIELDS = ("phone", "phone2")
PHONE_DIGITS = 10
"""Phones are matched on their last ten digits, so +1 (808) 555-0101 finds 808-555-0101."""

MIN_PHONE_DIGITS = 7
"""Fewer digits than this is not a phone number worth indexing or searching."""


def tokens(payload: dict) -> set[str]:
    """Return the search tokens of a lead payload: casefolded emails, last ten phone digits, names."""
    found = {f"email:{folded(value)}" for value in texts(payload, EMAIL_FIELDS)}
    found |= {f"phone:{digits}" for digits in map(phone_digits, texts(payload, PHONE_FIELDS)) if digits}
    names = [_name(value) for value in texts(payload, ("first_name", "last_name"))]
    found |= {f"name:{name}" for name in names}
    if len(names) == 2:
        found.add(f"name:{names[0]} {names[1]}")
    return found


def query_token(query: str) -> str | None:
    """Return the token a support query searches for: an email, a phone number, or a name."""
    value = query.strip()
    if not value:
        return None
    if "@" in value:
        return f"email:{folded(value)}"
    if not re.search(r"[^\d\s().+-]", value):
        digits = phone_digits(value)
        return f"phone:{digits}" if digits else None
    return f"name:{_name(value)}"


def token_keys(payload: dict) -> list[str]:
    """The keys of the sets a lead with this payload belongs in (what the intake's script adds it to)."""
    return sorted(keys.lead_search_token(_digest(token)) for token in tokens(payload))


def add(conn, lead_id: str, payload: dict) -> None:
    """Add a lead to the index under its payload's tokens; `conn` may be an open pipeline."""
    for key in token_keys(payload):
        conn.sadd(key, lead_id)
        conn.expire(key, defaults.HISTORY_TTL_SECONDS)


def lead_ids(conn, token: str) -> set[str]:
    """The ids of the leads indexed under one token."""
    return set(map(text, conn.smembers(keys.lead_search_token(_digest(token)))))


def texts(payload: dict, names: tuple[str, ...]) -> list[str]:
    """The non-blank string values of the named fields (cleared or non-text values are skipped)."""
    return [payload[name] for name in names if isinstance(payload.get(name), str) and payload[name].strip()]


def phone_digits(value: str) -> str | None:
    """The last ten digits of a phone number, or None when it has too few digits to be one."""
    digits = re.sub(r"\D", "", value)
    return digits[-PHONE_DIGITS:] if len(digits) >= MIN_PHONE_DIGITS else None


def _name(value: str) -> str:
    """A name as the index keeps it: casefolded, inner spaces collapsed."""
    return folded_words(value)


def _digest(token: str) -> str:
    """The hashed form of a token used in its key name."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:32]
