"""One lead's story for support (`bridge lead` and the console), and finding a lead by
what support is told: its Real Geeks id, its LionDesk contact id, the start of an e-mail
address, the last digits of a phone number, or a name typed without accents.

The search index is a Redis sorted set of `field:value<NUL>lead id` members, all of score
0, so that ZRANGEBYLEX finds every value starting with what was typed: e-mails and names
by prefix, phones by suffix (their digits are stored reversed). Key names carry no
personal data (only a month number); the values do, as the stored events already do.
Entries cannot expire one by one, so the index is kept in monthly buckets that expire a
history lifetime after their month: a lead indexed again lands in the current bucket,
and a lead nobody heard of for a year drops out with its history. An old e-mail or
phone keeps finding the lead after it changed: support searches with what the customer
tells them, which is often the old value.
"""

from __future__ import annotations

import hashlib
import re
import time
import unicodedata
from dataclasses import dataclass, field

from bridge import defaults
from bridge.jsonlimits import parse
from bridge.ops import present
from bridge.storage import events, history, keys, mappings
from bridge.storage.redis import text
from bridge.translate.realgeeks import normalize_id

EMAIL_FIELDS = ("email", "second_email")
PHONE_FIELDS = ("phone", "phone2")
PHONE_DIGITS = 10
"""Phones are matched on at most their last ten digits, so +1 (808) 555-0101 finds 808-555-0101."""

MIN_PHONE_DIGITS = 7
"""Fewer digits than this is not a phone number worth indexing or searching: a query of
seven digits finds every phone ending in them (a local number without its area code)."""

MIN_PREFIX_CHARACTERS = 2
"""Shortest name or e-mail start searched for; one letter would list half the leads."""

MAX_QUERY_CHARACTERS = 200
"""Longest query looked at; the rest is ignored."""

SEPARATOR = "\0"
"""Between the value and the lead id of an index member: no e-mail, phone or name holds it."""

CARD_EVENTS_SCANNED = 20
"""Most stored events read (newest first) to find a lead's name, email and phone."""


@dataclass
class LeadStory:
    """Everything support sees about one Real Geeks lead."""

    lead_id: str
    mapping: dict[str, str] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    name: str | None = None
    email: str | None = None
    phone: str | None = None

    @property
    def known(self) -> bool:
        """Whether the bridge has any record of this lead."""
        return bool(self.history or self.mapping)

    def to_json(self) -> dict:
        """Return the story as JSON-ready data; each history entry gains `at_iso`."""
        return {"lead_id": self.lead_id, "name": self.name, "email": self.email, "phone": self.phone,
                "mapping": self.mapping,
                "history": [_with_iso(entry) for entry in self.history]}

    def card_json(self) -> dict:
        """Return the lead as one search result: who it is, its LionDesk link and its latest story entry."""
        last = self.history[-1] if self.history else None
        return {"lead_id": self.lead_id, "name": self.name, "email": self.email, "phone": self.phone,
                "mapping": self.mapping,
                "last_entry": _with_iso(last) if isinstance(last, dict) else None}


def _with_iso(entry: dict) -> dict:
    """A history entry for JSON output: as stored, plus `at_iso`."""
    return {**entry, "at_iso": present.iso_time(entry.get("at"))}


def search_tokens(payload: dict) -> set[str]:
    """Return the index values of a lead payload (pure): `e:` e-mails, `p:` phone digits reversed, `n:` names.

    A name is indexed from each of its words on ("mary ann smith", "ann smith", "smith"),
    so a prefix search finds it by first name, middle name or last name.
    """
    tokens = {f"e:{email}" for email in map(_email, _texts(payload, EMAIL_FIELDS)) if email}
    tokens |= {f"p:{digits[::-1]}" for digits in map(_phone_digits, _texts(payload, PHONE_FIELDS)) if digits}
    words = _name(" ".join(_texts(payload, ("first_name", "last_name")))).split()
    tokens |= {"n:" + " ".join(words[start:]) for start in range(len(words))}
    return tokens


def index_entries(lead_id: str, payload: dict) -> list[str]:
    """Return the sorted-set members that index `lead_id` under its payload's values (pure)."""
    return sorted(f"{token}{SEPARATOR}{lead_id}" for token in search_tokens(payload))


def index_key(now: float | None = None) -> str:
    """The index bucket a lead indexed at `now` goes into."""
    return keys.lead_search_bucket(_bucket(now))


def index_lead(conn, lead_id: str, payload: dict, now: float | None = None) -> None:
    """Add a lead to the search index under its payload's values; `conn` may be an open pipeline."""
    members = index_entries(lead_id, payload)
    if not members:
        return
    key = index_key(now)
    conn.zadd(key, dict.fromkeys(members, 0))
    conn.expire(key, defaults.HISTORY_TTL_SECONDS + defaults.SEARCH_INDEX_BUCKET_SECONDS)


def query_prefixes(query: str) -> list[str]:
    """Return the index prefixes a support query looks for (pure): an e-mail's start, a phone's end, a name's start."""
    text = query.strip()
    if "@" in text:
        return [f"e:{_email(text)}"]
    if text and not re.search(r"[^\d\s().+-]", text):
        digits = _phone_digits(text)
        return [f"p:{digits[::-1]}"] if digits else []
    name = _name(text)
    if len(name) < MIN_PREFIX_CHARACTERS:
        return []
    prefixes = [f"n:{name}"]
    if not re.search(r"\s", text):  # one word could be the start of an e-mail address too ("mei.wong")
        prefixes.append(f"e:{_email(text)}")
    return prefixes


def search(conn, query: str, limit: int = defaults.CONSOLE_PAGE_SIZE, now: float | None = None) -> list[str]:
    """Return ids of leads matching `query`, best first: the lead with that Real Geeks id, the lead linked
    to that LionDesk contact id, then index matches (exact values before longer ones)."""
    query = query.strip()[:MAX_QUERY_CHARACTERS]
    found = []
    candidate = normalize_id(query)
    if candidate and re.fullmatch(r"[0-9a-z]+", candidate) and _exists(conn, candidate):
        found.append(candidate)
    if query.isdigit() and (linked := mappings.lead_of_contact(conn, query)) and linked not in found:
        found.append(linked)
    matches = set()
    for prefix in query_prefixes(query):
        for member in _members_from(conn, prefix, limit, now):
            value, _, lead_id = member.rpartition(SEPARATOR)
            matches.add((value != prefix, value, lead_id))
    for _, _, lead_id in sorted(matches):
        if lead_id not in found:
            found.append(lead_id)
    found += [lead_id for lead_id in sorted(_legacy_matches(conn, query)) if lead_id not in found]
    return found[:limit]


def _legacy_matches(conn, query: str) -> set[str]:
    """Leads indexed before the prefix index, under the hashed exact token the query names.

    Those sets expire by themselves a history lifetime after their last write; until
    then a lead that sent nothing since the upgrade stays findable by its exact values.
    """
    if "@" in query:
        token = f"email:{query.casefold()}"
    elif query and not re.search(r"[^\d\s().+-]", query):
        token = f"phone:{_phone_digits(query)}" if _phone_digits(query) else None
    else:
        token = f"name:{' '.join(query.casefold().split())}" if query else None
    if token is None:
        return set()
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()[:32]
    return {text(member) for member in conn.smembers(keys.lead_search_token(digest))}


def _members_from(conn, prefix: str, limit: int, now: float | None) -> list[str]:
    """Index members starting with `prefix`, from every bucket still alive, at most `limit` per bucket."""
    newest = _bucket(now)
    oldest = _bucket((time.time() if now is None else now) - defaults.HISTORY_TTL_SECONDS)
    pipe = conn.pipeline(transaction=False)
    low = f"[{prefix}".encode("utf-8")
    high = f"[{prefix}".encode("utf-8") + b"\xff"  # no UTF-8 text holds the byte 0xff
    for bucket in range(newest, oldest - 1, -1):
        pipe.zrangebylex(keys.lead_search_bucket(bucket), low, high, start=0, num=limit)
    return [text(member) for members in pipe.execute() for member in members]


def lead_story(conn, lead_id: str) -> LeadStory:
    """Return a lead's LionDesk mapping, history and contact card; the id may carry dashes or capitals."""
    lead_id = normalize_id(lead_id)
    mapping = mappings.get_link(conn, lead_id)
    story = LeadStory(lead_id=lead_id, mapping=mapping, history=history.read(conn, lead_id))
    story.name, story.email, story.phone = _card(conn, story.history)
    return story


def lead_cards(conn, lead_ids: list[str]) -> list[LeadStory]:
    """Return the story of each lead, for a list of search results."""
    return [lead_story(conn, lead_id) for lead_id in lead_ids]


def event_payload(event: events.Event | None) -> dict:
    """An event's payload when it is a JSON object, else {} (no event, invalid JSON, a list...)."""
    if event is None:
        return {}
    # Within the intake's limits: a stored body nested too deeply for this stack, or with an
    # integer Python will not convert, must not break every page that lists it.
    payload = parse(event.body).value
    return payload if isinstance(payload, dict) else {}


def person_name(payload: dict) -> str | None:
    """The person a payload is about: first and last name, or a Real Geeks user's `name`."""
    text = " ".join(part.strip() for part in _texts(payload, ("first_name", "last_name")))
    if not text and isinstance(payload.get("name"), str):
        text = payload["name"].strip()
    return text or None


def _card(conn, story: list[dict]) -> tuple[str | None, str | None, str | None]:
    """Find the lead's latest name, email and phone in the newest valid stored events of its story."""
    name = email = phone = None
    event_ids = [entry["event_id"] for entry in reversed(story)
                 if isinstance(entry, dict) and entry.get("kind") == "received"
                 and isinstance(entry.get("event_id"), str)]
    for event_id in event_ids[:CARD_EVENTS_SCANNED]:
        event = events.load(conn, event_id)
        if event is None or event.status == events.REJECTED:
            continue  # an invalid payload is no authority on who the lead is
        payload = event_payload(event)
        name = name or person_name(payload)
        email = email or next(iter(_texts(payload, ("email",))), None)
        phone = phone or next(iter(_texts(payload, ("phone",))), None)
        if name and email and phone:
            break
    return name, email, phone


def _exists(conn, lead_id: str) -> bool:
    """Whether the bridge has a history or a mapping for a lead id."""
    return bool(conn.exists(keys.lead_history(lead_id), keys.lead_mapping(lead_id)))


def _texts(payload: dict, names: tuple[str, ...]) -> list[str]:
    """The non-blank string values of the named fields (cleared or non-text values are skipped)."""
    return [payload[name] for name in names if isinstance(payload.get(name), str) and payload[name].strip()]


def _phone_digits(text: str) -> str | None:
    """The last ten digits of a phone number, or None when it has too few digits to be one."""
    digits = re.sub(r"\D", "", text)
    return digits[-PHONE_DIGITS:] if len(digits) >= MIN_PHONE_DIGITS else None


def _name(text: str) -> str:
    """A name as the index keeps it: without accents, casefolded, apostrophes dropped, other
    punctuation a space, spaces collapsed ("Zoë O'Brien-Ng" → "zoe obrien ng")."""
    bare = "".join(char for char in unicodedata.normalize("NFKD", text) if not unicodedata.combining(char))
    bare = re.sub(r"['’`]", "", bare.casefold())
    return " ".join(re.sub(r"[^\w]+|_", " ", bare).split())


def _email(text: str) -> str:
    """An e-mail address (or its start) as the index keeps it: trimmed, casefolded, no NUL."""
    return text.strip().casefold().replace(SEPARATOR, "")


def _bucket(now: float | None) -> int:
    """The number of the index bucket covering the time `now` (default: this moment)."""
    return int((time.time() if now is None else now) // defaults.SEARCH_INDEX_BUCKET_SECONDS)
