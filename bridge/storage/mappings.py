"""The links between the two systems, kept per Real Geeks lead.

- the id maps, both ways: Real Geeks lead ↔ LionDesk contact (and LionDesk lead);
- the snapshot of the fields last synced (the reverse sync pushes only what differs from it, so neither side echoes the other);
- once-only effects already done (campaign started, offers created);
- which activities already reached LionDesk.

All of them live `keys.lifetimes.link` (a year by default) after their last change, and
each is one key per lead of bounded size: the activity marks are one sorted set of short
fingerprints (at most ACTIVITY_MARKS_MAX), the snapshot is stored without its empty fields.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields

import redis

from bridge import defaults
from bridge.storage import keys
from bridge.storage.redis import delete_if_equal, text, text_hash
from bridge.translate.snapshot import empty_snapshot


PUSHED_PREFIX = "pushed_ns:"
"""Link-hash field prefix: when Real Geeks accepted the reverse sync's write of a field (unix ns)."""

LEGACY_NAMES = {"lead_id": "liondesk_lead_id"}
"""Link-hash fields under the name the previous release wrote them → today's name.

The previous release stored the LionDesk lead id as `lead_id`, a name that everywhere else
means the Real Geeks lead. Links it wrote are read under the new name for one release (the
old field stays in the hash, so a rollback still finds it); new writes use the new name.
"""


@dataclass
class LeadLink:
    """The link of one Real Geeks lead to LionDesk, as its hash stores it; absent fields are None / 0 / {}."""

    lead_id: str
    """The (normalised) Real Geeks lead the link belongs to: the hash's key, not one of its fields."""
    contact_id: str | None = None
    """The LionDesk contact of the lead."""
    liondesk_lead_id: str | None = None
    """The LionDesk lead the forward sync made for it (stored as `lead_id` by the previous release)."""
    lead_source_id: str | None = None
    """The LionDesk lead source that lead was filed under (its lead route picks the campaign)."""
    contact_source_id: str | None = None
    """The contact source of the LionDesk contact (ours, or its own when it existed): routes match on it too."""
    address_id: str | None = None
    """The LionDesk address record the bridge writes the lead's address to."""
    site_uuid: str | None = None
    """The Real Geeks site the lead lives on (from its webhook, or the reverse rules)."""
    received_id: str | None = None
    """The lead id as Real Geeks spells it (dashes, capitals): what the Incoming API is called with."""
    applied_ns: int = 0
    """When the last Real Geeks change applied to LionDesk was made (unix ns): older ones are stale."""
    origin: str | None = None
    """`LIONDESK_ORIGIN` for a lead the reverse sync created from a LionDesk contact."""
    created: str | None = None
    """For such a lead: "pending" once its Real Geeks create was sent, "done" once accepted."""
    liondesk_seen: str | None = None
    """Fingerprint of the contact state the reverse sync last handled, and the snapshot it was handled against."""
    matched_by: str | None = None
    """How the lead found a contact the bridge did not create for it (e-mail, a phone field): that contact is
    someone's, so its populated person fields are never overwritten."""
    shared_with: str | None = None
    """The Real Geeks lead whose contact this lead shares (linked first): the contact's reverse map names that one."""
    withheld_seen: str | None = None
    """Fingerprint of the Real Geeks values last put on the contact's timeline instead of written (told once)."""
    lead_text: str | None = None
    """JSON of the values the LionDesk lead's text was last written from (status, timeframe, notes...)."""
    pushed_ns: dict[str, int] = field(default_factory=dict)
    """Snapshot field → when Real Geeks accepted the reverse sync's write of it (unix ns)."""
    extra: dict[str, str] = field(default_factory=dict)
    """Fields this release does not know (e.g. written by a newer one): kept as read, never dropped."""

    @property
    def linked(self) -> bool:
        """Whether the lead has a LionDesk contact."""
        return self.contact_id is not None

    def facts(self) -> dict[str, str | int]:
        """Every field stored, under today's names (what support sees, and `bridge lead --json` prints)."""
        named = {name: getattr(self, name) for name in _NAMED}
        return {**{name: value for name, value in named.items() if value not in (None, 0)},
                **{PUSHED_PREFIX + name: ns for name, ns in sorted(self.pushed_ns.items())}, **self.extra}


_NAMED = tuple(item.name for item in fields(LeadLink) if item.name not in ("lead_id", "pushed_ns", "extra"))
"""The link fields stored under their own name."""


def _as_int(raw: str) -> int:
    """A stored number, 0 when it is missing or unreadable (a time nobody recorded)."""
    try:
        return int(raw)
    except ValueError:
        return 0


def link_from_hash(lead_id: str, stored: dict[str, str]) -> LeadLink:
    """A link hash (as text) as a LeadLink: legacy names read as today's, unknown fields kept in `extra`."""
    values: dict = {}
    pushed: dict[str, int] = {}
    extra: dict[str, str] = {}
    for name, raw in stored.items():
        if name.startswith(PUSHED_PREFIX):
            pushed[name[len(PUSHED_PREFIX):]] = _as_int(raw)
        elif name in _NAMED:
            values[name] = raw
        elif name.startswith(EFFECT_PREFIX):
            continue  # once-only effects share the hash (`effect_state`), they are not link fields
        elif name not in LEGACY_NAMES:
            extra[name] = raw
    for old, new in LEGACY_NAMES.items():
        if stored.get(old) and not values.get(new):
            values[new] = stored[old]
    values = {name: raw for name, raw in values.items() if raw != ""}  # "" was never a value: absent
    if "applied_ns" in values:
        values["applied_ns"] = _as_int(values["applied_ns"])
    return LeadLink(lead_id=lead_id, pushed_ns=pushed, extra=extra, **values)


def load_link(conn: redis.Redis, lead_id: str) -> LeadLink:
    """The stored link of a Real Geeks lead (empty before its first sync): load it once per job."""
    return link_from_hash(lead_id, text_hash(conn.hgetall(keys.lead_mapping(lead_id))))


def save_link(conn: redis.Redis, link: LeadLink, /, *, claim: bool = True, **changes) -> None:
    """The one writer of the link hash: set `changes` on `link` and store just those fields (None: left as is).

    `pushed_ns` merges into the stored marks. The contact's reverse map is written with its
    contact id, unless `claim=False` (a second lead sharing a contact: the contact keeps its
    own link). Fields not named here are untouched, so a newer release's fields survive.
    """
    unknown = set(changes) - set(_NAMED) - {"pushed_ns"}
    if unknown:  # a misspelt field would be stored and never read
        raise ValueError(f"not lead-link fields: {sorted(unknown)}")
    stored: dict[str, str] = {}
    for name, value in changes.items():
        if value is None:
            continue
        if name == "pushed_ns":
            marks = {field_name: int(ns) for field_name, ns in value.items()}
            link.pushed_ns.update(marks)
            stored.update({PUSHED_PREFIX + field_name: str(ns) for field_name, ns in marks.items()})
            continue
        setattr(link, name, int(value) if name == "applied_ns" else str(value))
        stored[name] = str(value)
    if not stored:
        return
    key = keys.lead_mapping(link.lead_id)
    with conn.pipeline() as pipe:
        pipe.hset(key, mapping=stored)
        pipe.expire(key, keys.lifetimes.link)
        if "contact_id" in stored and claim:
            pipe.set(keys.contact_mapping(stored["contact_id"]), link.lead_id, ex=keys.lifetimes.link)
        pipe.execute()


def lead_of_contact(conn: redis.Redis, contact_id: int | str) -> str | None:
    """Return the Real Geeks lead id linked to a LionDesk contact, if any."""
    return text(conn.get(keys.contact_mapping(contact_id)))


def get_snapshot(conn: redis.Redis, lead_id: str) -> dict | None:
    """Return the fields last synced for a lead, or None before the first sync."""
    return decode_snapshot(conn.get(keys.lead_snapshot(lead_id)))


def save_snapshot(conn: redis.Redis, lead_id: str, snapshot: dict) -> None:
    """Replace the fields last synced for a lead."""
    conn.set(keys.lead_snapshot(lead_id), encode_snapshot(snapshot), ex=keys.lifetimes.link)


EMPTY_FIELDS = "~"
"""Snapshot member listing, comma-separated, the fields stored as cleared ("" or []) and left out."""

EVERY_OTHER = "*"
"""`~` of a snapshot holding every field: each field not stored is cleared."""


def encode_snapshot(snapshot: dict) -> str:
    """A snapshot as stored: compact JSON without its cleared fields, which `~` names instead.

    Most of a lead's fields are empty (no address, no second phone, no tags); naming them
    takes a few bytes where `"street_address": ""` took twenty. Fields absent from the
    snapshot stay absent when read back: absent and cleared mean different things to the sync.
    """
    empty = sorted(name for name, value in snapshot.items() if value == _cleared(name))
    stored = {name: value for name, value in snapshot.items() if name not in empty}
    if empty:
        # A whole snapshot (every field present, the usual case) says so in one character.
        whole = set(snapshot) == set(_EMPTY)
        stored[EMPTY_FIELDS] = EVERY_OTHER if whole else ",".join(empty)
    return json.dumps(stored, sort_keys=True, separators=(",", ":"))


def decode_snapshot(raw) -> dict | None:
    """A stored snapshot (either form: this release's or the previous one's whole JSON), or None."""
    if not raw:
        return None
    snapshot = json.loads(raw)
    empty = snapshot.pop(EMPTY_FIELDS, "")
    names = [name for name in _EMPTY if name not in snapshot] if empty == EVERY_OTHER else empty.split(",")
    for name in filter(None, names):
        snapshot[name] = _cleared(name)
    return snapshot


def _cleared(name: str):
    """The cleared value of a snapshot field: [] for tags, "" for the rest."""
    return _EMPTY.get(name, "")


_EMPTY = empty_snapshot()


EFFECT_PREFIX = "fx:"
"""Link-hash field prefix of a once-only effect's state ("fx:campaign:6" → "done").

Effects live in the link hash: a hash of their own cost a key per lead (about 120 bytes of
Redis's own overhead for 40 of content). Their states are short, so the hash stays compact.
The previous release's effects hash (`keys.lead_effects`) is still read until it expires.
"""


def effect_state(conn: redis.Redis, lead_id: str, effect: str) -> str | None:
    """The recorded state of a once-only effect (e.g. "campaign:6", "offers") of a lead, or None."""
    with conn.pipeline(transaction=False) as pipe:  # one round trip for both places
        pipe.hget(keys.lead_mapping(lead_id), EFFECT_PREFIX + effect)
        pipe.hget(keys.lead_effects(lead_id), effect)
        current, legacy = pipe.execute()
    return text(current if current is not None else legacy)


def effects(conn: redis.Redis, lead_id: str) -> dict[str, str]:
    """Return every once-only effect recorded for a lead (`campaign:42`, `offers`, `lead`) with its state:
    those in the link hash, and those the previous release kept in a hash of their own (until it expires)."""
    with conn.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.lead_effects(lead_id))
        pipe.hgetall(keys.lead_mapping(lead_id))
        previous, link = (text_hash(raw) for raw in pipe.execute())
    return {**previous, **{name[len(EFFECT_PREFIX):]: state for name, state in link.items()
                           if name.startswith(EFFECT_PREFIX)}}


def mark_effect(conn: redis.Redis, lead_id: str, effect: str, state: str) -> None:
    """Record the state of a once-only effect of a lead ("pending" before its call, "done" after)."""
    with conn.pipeline(transaction=False) as pipe:  # one round trip
        pipe.hset(keys.lead_mapping(lead_id), EFFECT_PREFIX + effect, state)
        pipe.expire(keys.lead_mapping(lead_id), keys.lifetimes.link)
        pipe.execute()


ACTIVITY_MARK_DIGITS = 12
"""Hex digits of an activity's fingerprint kept as its mark: 48 bits, so that two of a lead's
ACTIVITY_MARKS_MAX marks coincide with odds of about one in 10^8."""


def activity_seen(conn: redis.Redis, lead_id: str, fingerprint: str) -> bool:
    """Whether this activity already reached LionDesk (a mark of this release, or one key of the previous one's)."""
    with conn.pipeline(transaction=False) as pipe:
        pipe.zscore(keys.lead_activities(lead_id), fingerprint[:ACTIVITY_MARK_DIGITS])
        pipe.exists(keys.activity_dedupe(lead_id, fingerprint))
        score, legacy = pipe.execute()
    return score is not None or bool(legacy)


def mark_activity(conn: redis.Redis, lead_id: str, fingerprint: str) -> None:
    """Record that an activity reached LionDesk: kept as long as the link, the newest ACTIVITY_MARKS_MAX per lead."""
    key = keys.lead_activities(lead_id)
    with conn.pipeline(transaction=False) as pipe:  # one round trip
        pipe.zadd(key, {fingerprint[:ACTIVITY_MARK_DIGITS]: int(time.time())})  # unix seconds: newest last
        pipe.zremrangebyrank(key, 0, -defaults.ACTIVITY_MARKS_MAX - 1)
        pipe.expire(key, keys.lifetimes.link)
        pipe.execute()


def claim_contact(conn: redis.Redis, contact_id: int | str, lead_id: str) -> bool:
    """Link a LionDesk contact to a Real Geeks lead unless it is linked already; True if this call linked it."""
    return bool(conn.set(keys.contact_mapping(contact_id), lead_id, nx=True, ex=keys.lifetimes.link))


def release_contact(conn: redis.Redis, contact_id: int | str, lead_id: str) -> None:
    """Drop a contact's reverse map if it still names `lead_id` (a stale map: that lead links another contact)."""
    delete_if_equal(conn, keys.contact_mapping(contact_id), lead_id)


LIONDESK_ORIGIN = "liondesk"
"""Link `origin` of a lead the reverse sync created from a LionDesk contact: its contact
came first, so the forward sync makes it no LionDesk lead, campaign or offers."""


def links_of_contacts(conn: redis.Redis, contact_ids: list) -> list[tuple[str | None, LeadLink | None, dict | None]]:
    """(lead id, link, snapshot) of each LionDesk contact, (None, None, None) when unlinked: two round trips in all."""
    with conn.pipeline(transaction=False) as pipe:
        for contact_id in contact_ids:
            pipe.get(keys.contact_mapping(contact_id))
        lead_ids = [text(value) for value in pipe.execute()]
    with conn.pipeline(transaction=False) as pipe:
        for lead_id in filter(None, lead_ids):
            pipe.hgetall(keys.lead_mapping(lead_id))
            pipe.get(keys.lead_snapshot(lead_id))
        stored = iter(pipe.execute())
    found = []
    for lead_id in lead_ids:
        if lead_id is None:
            found.append((None, None, None))
            continue
        link, snapshot = next(stored), next(stored)
        found.append((lead_id, link_from_hash(lead_id, text_hash(link)), decode_snapshot(snapshot)))
    return found
