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

import redis

from bridge import defaults
from bridge.storage import keys
from bridge.storage.redis import text, text_hash
from bridge.translate.snapshot import empty_snapshot


def get_link(conn: redis.Redis, lead_id: str) -> dict:
    """Return the stored link of a Real Geeks lead: contact_id, lead_id (LionDesk), site_uuid, ... or {}."""
    return text_hash(conn.hgetall(keys.lead_mapping(lead_id)))


def save_link(conn: redis.Redis, lead_id: str, /, **fields) -> None:
    """Record LionDesk ids (and facts like site_uuid) for a Real Geeks lead, and the reverse map."""
    values = {k: str(v) for k, v in fields.items() if v is not None}
    with conn.pipeline() as pipe:
        pipe.hset(keys.lead_mapping(lead_id), mapping=values)
        pipe.expire(keys.lead_mapping(lead_id), keys.lifetimes.link)
        if "contact_id" in values:
            pipe.set(keys.contact_mapping(values["contact_id"]), lead_id, ex=keys.lifetimes.link)
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


def effect_state(conn: redis.Redis, lead_id: str, effect: str) -> str | None:
    """The recorded state of a once-only effect (e.g. "campaign:6", "offers") of a lead, or None."""
    return text(conn.hget(keys.lead_effects(lead_id), effect))


def mark_effect(conn: redis.Redis, lead_id: str, effect: str, state: str) -> None:
    """Record the state of a once-only effect of a lead ("pending" before its call, "done" after)."""
    with conn.pipeline(transaction=False) as pipe:  # one round trip
        pipe.hset(keys.lead_effects(lead_id), effect, state)
        pipe.expire(keys.lead_effects(lead_id), keys.lifetimes.link)
        pipe.execute()


ACTIVITY_MARK_DIGITS = 16
"""Hex digits of an activity's fingerprint kept as its mark: 64 bits, so that two activities of
one lead share a mark with odds under one in 10^10 even for a lead with 50,000 of them."""


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
        pipe.zadd(key, {fingerprint[:ACTIVITY_MARK_DIGITS]: int(time.time() * 1000)})  # unix ms: newest last
        pipe.zremrangebyrank(key, 0, -defaults.ACTIVITY_MARKS_MAX - 1)
        pipe.expire(key, keys.lifetimes.link)
        pipe.execute()


def claim_contact(conn: redis.Redis, contact_id: int | str, lead_id: str) -> bool:
    """Link a LionDesk contact to a Real Geeks lead unless it is linked already; True if this call linked it."""
    return bool(conn.set(keys.contact_mapping(contact_id), lead_id, nx=True, ex=keys.lifetimes.link))


LIONDESK_ORIGIN = "liondesk"
"""Link `origin` of a lead the reverse sync created from a LionDesk contact: its contact
came first, so the forward sync makes it no LionDesk lead, campaign or offers."""


def links_of_contacts(conn: redis.Redis, contact_ids: list) -> list[tuple[str | None, dict, dict | None]]:
    """(lead id, link, snapshot) of each LionDesk contact, (None, {}, None) when unlinked: two round trips in all."""
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
            found.append((None, {}, None))
            continue
        link, snapshot = next(stored), next(stored)
        found.append((lead_id, text_hash(link), decode_snapshot(snapshot)))
    return found
