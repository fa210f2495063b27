"""One lead's story for support (`bridge lead` and the console), and finding a lead by
its Real Geeks id, email, phone or name (the index itself: bridge/storage/search.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bridge import defaults
from bridge.jsonlimits import parse
from bridge.ops import present
from bridge.storage import events, history, keys, kinds, mappings
from bridge.storage import search as search_index
from bridge.translate.realgeeks import normalize_id

CARD_EVENTS_SCANNED = 20
"""Most stored events read (newest first) to find a lead's name, email and phone."""


@dataclass
class LeadStory:
    """Everything support sees about one Real Geeks lead."""

    lead_id: str
    mapping: mappings.LeadLink
    history: list[dict] = field(default_factory=list)
    name: str | None = None
    email: str | None = None
    phone: str | None = None

    @property
    def known(self) -> bool:
        """Whether the bridge has any record of this lead."""
        return bool(self.history or self.mapping.facts())

    def to_json(self) -> dict:
        """Return the story as JSON-ready data; each history entry gains `at_iso`."""
        return {"lead_id": self.lead_id, "name": self.name, "email": self.email, "phone": self.phone,
                "mapping": self.mapping.facts(),
                "history": [{**entry, "at_iso": present.iso_time(entry.get("at"))} for entry in self.history]}


def search(conn, query: str, limit: int = defaults.CONSOLE_PAGE_SIZE) -> list[str]:
    """Return ids of leads matching `query`: the lead with that Real Geeks id first, then index matches."""
    found = []
    candidate = normalize_id(query)
    if candidate and re.fullmatch(r"[0-9a-z]+", candidate) and _exists(conn, candidate):
        found.append(candidate)
    token = search_index.query_token(query)
    if token:
        found += sorted(member for member in search_index.lead_ids(conn, token) if member not in found)
    return found[:limit]


def lead_story(conn, lead_id: str) -> LeadStory:
    """Return a lead's LionDesk mapping, history and contact card; the id may carry dashes or capitals."""
    lead_id = normalize_id(lead_id)
    mapping = mappings.load_link(conn, lead_id)
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
    text = " ".join(part.strip() for part in search_index.texts(payload, ("first_name", "last_name")))
    if not text and isinstance(payload.get("name"), str):
        text = payload["name"].strip()
    return text or None


def _card(conn, story: list[dict]) -> tuple[str | None, str | None, str | None]:
    """Find the lead's latest name, email and phone in the newest valid stored events of its story."""
    name = email = phone = None
    event_ids = [entry["event_id"] for entry in reversed(story)
                 if isinstance(entry, dict) and entry.get("kind") == kinds.RECEIVED
                 and isinstance(entry.get("event_id"), str)]
    for event_id in event_ids[:CARD_EVENTS_SCANNED]:
        event = events.load(conn, event_id)
        if event is None or event.status == events.REJECTED:
            continue  # an invalid payload is no authority on who the lead is
        payload = event_payload(event)
        name = name or person_name(payload)
        email = email or next(iter(search_index.texts(payload, ("email",))), None)
        phone = phone or next(iter(search_index.texts(payload, ("phone",))), None)
        if name and email and phone:
            break
    return name, email, phone


def _exists(conn, lead_id: str) -> bool:
    """Whether the bridge has a history or a mapping for a lead id."""
    return bool(conn.exists(keys.lead_history(lead_id), keys.lead_mapping(lead_id)))
