"""One lead's story for support (`bridge lead` and the console), and finding a lead by what
support is told: its Real Geeks id, its LionDesk contact id, the start of an e-mail address,
the last digits of a phone number, or a name typed without accents (the index itself:
bridge/storage/search.py).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from bridge import defaults
from bridge.clients.liondesk import cached_reference
from bridge.jsonlimits import parse
from bridge.ops import present, status
from bridge.queue import event_job_id
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
                "history": [_with_iso(entry) for entry in self.history]}

    def card_json(self) -> dict:
        """Return the lead as one search result: who it is, its LionDesk link and its latest story entry."""
        last = self.history[-1] if self.history else None
        return {"lead_id": self.lead_id, "name": self.name, "email": self.email, "phone": self.phone,
                "mapping": self.mapping.facts(), "last_entry": _with_iso(last) if isinstance(last, dict) else None}


def _with_iso(entry: dict) -> dict:
    """A history entry for JSON output: as stored, plus `at_iso`."""
    return {**entry, "at_iso": present.iso_time(entry.get("at"))}


DELIVERED, RETRYING, WAITING, FAILED, QUEUED, REJECTED, IGNORED, UNKNOWN = (
    "delivered", "retrying", "waiting", "failed", "queued", "rejected", "ignored", "unknown")
"""Where a lead's latest delivery stands, as its page's summary says first."""

STATE_WORDS = {
    DELIVERED: "Delivered to LionDesk", RETRYING: "Waiting: LionDesk failed, retrying",
    WAITING: "Waiting for LionDesk to be connected again", FAILED: "Failed: not in LionDesk",
    QUEUED: "Queued: on its way to LionDesk", REJECTED: "Rejected: the delivery was not valid",
    IGNORED: "Ignored: nothing to do for this delivery", UNKNOWN: "No delivery recorded",
}
"""How the console and `bridge lead` say each state."""

_STATE_OF_KIND = {kinds.PROCESSED: DELIVERED, kinds.REJECTED: REJECTED, kinds.REPLAYED: QUEUED,
                  kinds.RETRIED_NOW: QUEUED, kinds.ATTEMPT_INTERRUPTED: RETRYING}
"""Story entries that settle the latest delivery's state by their kind alone."""


@dataclass
class LeadSummary:
    """The answer to "did this lead reach LionDesk?": state, when, why, and who works it there."""

    state: str = UNKNOWN
    at: float | None = None
    action: str | None = None
    reason: str | None = None
    """The error of a failed or waiting delivery, or why it was rejected."""
    job_id: str | None = None
    """The job of the latest delivery: what replay or retry-now acts on."""
    next_attempt_at: float | None = None
    contact_id: str | None = None
    contact_url: str | None = None
    agent: str | None = None
    campaigns: list[str] = field(default_factory=list)
    route: str | None = None

    @property
    def headline(self) -> str:
        """The state in words."""
        return STATE_WORDS[self.state]

    def to_json(self) -> dict:
        """Return the summary as JSON-ready data, times in ISO 8601 UTC."""
        return {**asdict(self), "at": present.iso_time(self.at), "next_attempt_at": present.iso_time(self.next_attempt_at)}


@dataclass
class Step:
    """One step of a lead's story: an entry, with the calls made on the way to it folded under it."""

    index: int | None
    """The entry's position in the story (None: calls of a step not finished yet)."""
    entry: dict | None
    calls: list[tuple[int, dict]] = field(default_factory=list)


def story_steps(story: list[dict]) -> list[Step]:
    """Group a story into steps: each run of `call` entries goes under the entry written after it (pure)."""
    steps, calls = [], []
    for index, entry in enumerate(story):
        if isinstance(entry, dict) and entry.get("kind") == kinds.CALL:
            calls.append((index, entry))
            continue
        steps.append(Step(index, entry, calls))
        calls = []
    if calls:
        steps.append(Step(None, None, calls))
    return steps


def summary_state(story: list[dict]) -> LeadSummary:
    """Read the latest forward delivery's state from a story: delivered, retrying, waiting, failed... (pure)."""
    summary = LeadSummary()
    for entry in story:
        if not isinstance(entry, dict) or entry.get("direction") == "reverse":
            continue  # LionDesk → Real Geeks work says nothing about the delivery to LionDesk
        kind, status_, outcome = (value if isinstance(value, str) else None
                                  for value in (entry.get("kind"), entry.get("status"), entry.get("outcome")))
        if kind == kinds.RECEIVED:
            state = {events.QUEUED: QUEUED, events.IGNORED: IGNORED, events.REJECTED: REJECTED}.get(status_)
        elif kind == kinds.ATTEMPT_FAILED:
            state = {RETRYING: RETRYING, WAITING: WAITING, FAILED: FAILED}.get(outcome, RETRYING)
        else:
            state = _STATE_OF_KIND.get(kind)
        if state is None:
            continue
        event_id = entry.get("event_id") if isinstance(entry.get("event_id"), str) else None
        summary.state, summary.at = state, entry.get("at") if isinstance(entry.get("at"), (int, float)) else None
        summary.job_id = event_job_id(event_id) if event_id else summary.job_id
        summary.action = entry.get("action") if isinstance(entry.get("action"), str) else summary.action
        summary.reason = None
        if kind == kinds.ATTEMPT_FAILED:
            summary.reason = f"{present.shown(entry.get('error_class'), 200) or 'Error'}: {present.shown(entry.get('error'), 500)}"
        elif state == REJECTED and entry.get("errors"):
            summary.reason = present.errors_sentence(entry.get("errors"))
    return summary


def lead_summary(conn, story: LeadStory, contact_url: str | None = None) -> LeadSummary:
    """The summary a lead's page starts with: state and when, next attempt, LionDesk contact (with a
    link: `contact_url` with `{contact_id}`, else LionDesk's front door), agent, campaigns and route.

    Names come from LionDesk's reference lists as the bridge cached them: a page never calls LionDesk.
    """
    summary = summary_state(story.history)
    if summary.state in (RETRYING, WAITING) and summary.job_id:
        summary.next_attempt_at = status.next_attempt_at(conn, summary.job_id)
    summary.contact_id = story.mapping.contact_id
    if summary.contact_id:
        summary.contact_url = (contact_url.replace("{contact_id}", summary.contact_id) if contact_url
                               else defaults.LIONDESK_APP_URL)
    summary.agent = _agent(conn, story)
    summary.campaigns = _campaigns(conn, story.lead_id)
    summary.route = _route(conn, story.mapping)
    return summary


def _by_id(conn, kind: str) -> dict[str, dict]:
    """A cached LionDesk reference list by record id (empty when not cached)."""
    return {str(record.get("id")): record for record in cached_reference(conn, kind) or []}


def _agent(conn, story: LeadStory) -> str | None:
    """The LionDesk user the contact is assigned to, by name when the users list is cached."""
    for entry in reversed(story.history):
        if isinstance(entry, dict) and entry.get("kind") in (kinds.ASSIGNED, kinds.UNASSIGNED):
            if entry.get("kind") == kinds.UNASSIGNED or entry.get("user_id") is None:
                return None
            user = _by_id(conn, "users").get(str(entry["user_id"]))
            name = " ".join(str(user.get(part) or "").strip() for part in ("first_name", "last_name")).strip() if user else ""
            return name or (user or {}).get("email") or f"LionDesk user {entry['user_id']}"
    agent_email = (mappings.get_snapshot(conn, story.lead_id) or {}).get("agent_email")
    return agent_email if isinstance(agent_email, str) and agent_email else None


def _campaigns(conn, lead_id: str) -> list[str]:
    """The LionDesk campaigns the bridge started for the lead, by name when the campaign list is cached."""
    started = [effect.partition(":")[2] for effect, state in mappings.effects(conn, lead_id).items()
               if effect.startswith("campaign:") and state == "done"]
    if not started:
        return []
    names = _by_id(conn, "campaigns")
    return [str(names.get(campaign_id, {}).get("name") or f"campaign {campaign_id}") for campaign_id in started]


def _route(conn, mapping: mappings.LeadLink) -> str | None:
    """The LionDesk lead route the lead's source falls under (distribution and team), when routes are cached."""
    source_id = mapping.lead_source_id
    if not source_id:
        return None
    source = _by_id(conn, "lead-sources").get(str(source_id), {}).get("name") or f"lead source {source_id}"
    for route in cached_reference(conn, "lead-routes") or []:
        route_source = route.get("lead_source_id") or (route.get("lead_source") or {}).get("id")
        if str(route_source) == str(source_id):
            target = str(route.get("distribution_target") or "route")
            team = route.get("team_id") or (route.get("team") or {}).get("id")
            return f"{source} → {target}" + (f" (team {team})" if team else "")
    return f"{source} (no lead route)"


MAX_QUERY_CHARACTERS = 200
"""Longest query looked at; the rest is ignored."""


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
    ranked = {(value != prefix, value, lead_id) for prefix in search_index.prefixes(query)
              for value, lead_id in search_index.matches(conn, prefix, limit, now)}
    for _, _, lead_id in sorted(ranked):
        if lead_id not in found:
            found.append(lead_id)
    found += [lead_id for lead_id in sorted(search_index.legacy_lead_ids(conn, query)) if lead_id not in found]
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


NAME_BODY_LIMIT = 64 * 1024
"""Largest stored body (bytes) a list parses to name its lead; a larger one is named on its own page."""


def name_of_event(conn, event_id: str) -> str | None:
    """The person a stored delivery is about, read from its body when that is small enough (a list
    names each row without loading megabyte bodies), else None."""
    body = events.body_of(conn, event_id, NAME_BODY_LIMIT)
    if body is None:
        return None
    payload = parse(body).value
    return present.shown(person_name(payload if isinstance(payload, dict) else {}), 200) or None


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
