"""The lead search index, the one owner of its format. Written by the intake in the same atomic
call that stores a delivery (bridge/intake/store.py), read by support's search (bridge/ops/leads.py).

Support finds a lead by what they are told: the start of an e-mail address, the last digits of
a phone number, a name typed without accents. So the index is a Redis sorted set of
`field:value<NUL>lead id` members, all of score 0, and ZRANGEBYLEX finds every value starting
with what was typed: e-mails and names by prefix, phones by suffix (their digits are stored
reversed). Key names carry no personal data (only a bucket number); the values do, as the
stored events already do.

Members cannot expire one by one, so the index is kept in buckets of SEARCH_INDEX_BUCKET_SECONDS
that expire a history lifetime after their period: a lead indexed again lands in the current
bucket, and a lead nobody heard of for a year drops out with its history. An old e-mail or
phone keeps finding the lead after it changed: support searches with what the customer tells
them, which is often the old value.

Leads indexed by the earlier format (one hashed set per exact e-mail, phone or name) stay
findable by their exact values until those sets expire (`legacy_lead_ids`).
"""

from __future__ import annotations

import hashlib
import re
import time
import unicodedata

from bridge import defaults
from bridge.storage import keys
from bridge.storage.redis import text
from bridge.translate.text import folded, folded_words

EMAIL_FIELDS = ("email", "second_email")
PHONE_FIELDS = ("phone", "phone2")
PHONE_DIGITS = 10
"""Phones are matched on at most their last ten digits, so +1 (808) 555-0101 finds 808-555-0101."""

MIN_PHONE_DIGITS = 7
"""Fewer digits than this is not a phone number worth indexing or searching: a query of
seven digits finds every phone ending in them (a local number without its area code)."""

MIN_PREFIX_CHARACTERS = 2
"""Shortest name or e-mail start searched for; one letter would list half the leads."""

SEPARATOR = "\0"
"""Between the value and the lead id of an index member: no e-mail, phone or name holds it."""

INDEX_TTL_SECONDS = defaults.HISTORY_TTL_SECONDS + defaults.SEARCH_INDEX_BUCKET_SECONDS
"""How long a bucket lives after its last write: its leads' history lifetime, and its own period."""


def tokens(payload: dict) -> set[str]:
    """Return the index values of a lead payload (pure): `e:` e-mails, `p:` phone digits reversed, `n:` names.

    A name is indexed from each of its words on ("mary ann smith", "ann smith", "smith"),
    so a prefix search finds it by first name, middle name or last name.
    """
    found = {f"e:{email}" for email in map(_email, texts(payload, EMAIL_FIELDS)) if email}
    found |= {f"p:{digits[::-1]}" for digits in map(phone_digits, texts(payload, PHONE_FIELDS)) if digits}
    words = _name(" ".join(texts(payload, ("first_name", "last_name")))).split()
    found |= {"n:" + " ".join(words[start:]) for start in range(len(words))}
    return found


def entries(lead_id: str, payload: dict) -> list[str]:
    """The sorted-set members that index `lead_id` under its payload's values (what the intake's script adds)."""
    return sorted(f"{token}{SEPARATOR}{lead_id}" for token in tokens(payload))


def bucket_key(now: float | None = None) -> str:
    """The bucket a lead indexed at `now` (default: this moment) goes into."""
    return keys.lead_search_bucket(_bucket(now))


def add(conn, lead_id: str, payload: dict, now: float | None = None) -> None:
    """Add a lead to the index under its payload's values; `conn` may be an open pipeline."""
    members = entries(lead_id, payload)
    if members:
        key = bucket_key(now)
        conn.zadd(key, dict.fromkeys(members, 0))
        conn.expire(key, INDEX_TTL_SECONDS)


def prefixes(query: str) -> list[str]:
    """Return the index prefixes a support query looks for (pure): an e-mail's start, a phone's end, a name's start."""
    value = query.strip()
    if "@" in value:
        return [f"e:{_email(value)}"]
    if value and not re.search(r"[^\d\s().+-]", value):
        digits = phone_digits(value)
        return [f"p:{digits[::-1]}"] if digits else []
    name = _name(value)
    if len(name) < MIN_PREFIX_CHARACTERS:
        return []
    found = [f"n:{name}"]
    if not re.search(r"\s", value):  # one word could be the start of an e-mail address too ("mei.wong")
        found.append(f"e:{_email(value)}")
    return found


def matches(conn, prefix: str, limit: int, now: float | None = None) -> list[tuple[str, str]]:
    """(value, lead id) of the members starting with `prefix`, from every bucket still alive, at most
    `limit` per bucket."""
    newest = _bucket(now)
    oldest = _bucket((time.time() if now is None else now) - defaults.HISTORY_TTL_SECONDS)
    low = f"[{prefix}".encode("utf-8")
    high = low + b"\xff"  # no UTF-8 text holds the byte 0xff: every member starting with the prefix sorts below
    pipe = conn.pipeline(transaction=False)
    for bucket in range(newest, oldest - 1, -1):
        pipe.zrangebylex(keys.lead_search_bucket(bucket), low, high, start=0, num=limit)
    found = []
    for members in pipe.execute():
        for member in map(text, members):
            value, _, lead_id = member.rpartition(SEPARATOR)
            found.append((value, lead_id))
    return found


def legacy_lead_ids(conn, query: str) -> set[str]:
    """Leads indexed by the earlier format, under the hashed exact token the query names."""
    value = query.strip()
    if "@" in value:
        token = f"email:{folded(value)}"
    elif value and not re.search(r"[^\d\s().+-]", value):
        digits = phone_digits(value)
        token = f"phone:{digits}" if digits else None
    else:
        token = f"name:{folded_words(value)}" if value else None
    if token is None:
        return set()
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()[:32]
    return set(map(text, conn.smembers(keys.lead_search_token(digest))))


def texts(payload: dict, names: tuple[str, ...]) -> list[str]:
    """The non-blank string values of the named fields (cleared or non-text values are skipped)."""
    return [payload[name] for name in names if isinstance(payload.get(name), str) and payload[name].strip()]


def phone_digits(value: str) -> str | None:
    """The last ten digits of a phone number, or None when it has too few digits to be one."""
    digits = re.sub(r"\D", "", value)
    return digits[-PHONE_DIGITS:] if len(digits) >= MIN_PHONE_DIGITS else None


def _name(value: str) -> str:
    """A name as the index keeps it: without accents, casefolded, apostrophes dropped, other
    punctuation a space, spaces collapsed ("Zoë O'Brien-Ng" → "zoe obrien ng")."""
    bare = "".join(char for char in unicodedata.normalize("NFKD", value) if not unicodedata.combining(char))
    bare = re.sub(r"['’`]", "", bare.casefold())
    return folded_words(re.sub(r"[^\w]+|_", " ", bare))


def _email(value: str) -> str:
    """An e-mail address (or its start) as the index keeps it: trimmed, casefolded, no NUL."""
    return folded(value).replace(SEPARATOR, "")


def _bucket(now: float | None) -> int:
    """The number of the bucket covering the time `now` (default: this moment)."""
    return int((time.time() if now is None else now) // defaults.SEARCH_INDEX_BUCKET_SECONDS)
