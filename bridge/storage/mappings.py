"""The links between the two systems, kept per Real Geeks lead.

- the id maps, both ways: Real Geeks lead ↔ LionDesk contact (and LionDesk lead);
- the snapshot of the fields last synced (the reverse sync pushes only what differs from it, so neither side echoes the other);
- once-only effects already done (campaign started, offers created);
- which activities already reached LionDesk.
"""

from __future__ import annotations

import json

import redis

from bridge import defaults
from bridge.storage import keys
from bridge.storage.redis import text, text_hash


def get_link(conn: redis.Redis, lead_id: str) -> dict:
    """Return the stored link of a Real Geeks lead: contact_id, lead_id (LionDesk), site_uuid, ... or {}."""
    return text_hash(conn.hgetall(keys.lead_mapping(lead_id)))


def save_link(conn: redis.Redis, lead_id: str, /, *, claim: bool = True, **fields) -> None:
    """Record LionDesk ids (and facts like site_uuid) for a Real Geeks lead, and (`claim`) the reverse map.

    `claim=False` links a second lead to a contact without moving the contact's own link.
    """
    values = {k: str(v) for k, v in fields.items() if v is not None}
    with conn.pipeline() as pipe:
        pipe.hset(keys.lead_mapping(lead_id), mapping=values)
        pipe.expire(keys.lead_mapping(lead_id), defaults.HISTORY_TTL_SECONDS)
        if "contact_id" in values and claim:
            pipe.set(keys.contact_mapping(values["contact_id"]), lead_id, ex=defaults.HISTORY_TTL_SECONDS)
        pipe.execute()


def lead_of_contact(conn: redis.Redis, contact_id: int | str) -> str | None:
    """Return the Real Geeks lead id linked to a LionDesk contact, if any."""
    return text(conn.get(keys.contact_mapping(contact_id)))


def get_snapshot(conn: redis.Redis, lead_id: str) -> dict | None:
    """Return the fields last synced for a lead, or None before the first sync."""
    raw = conn.get(keys.lead_snapshot(lead_id))
    return json.loads(raw) if raw else None


def save_snapshot(conn: redis.Redis, lead_id: str, snapshot: dict) -> None:
    """Replace the fields last synced for a lead."""
    conn.set(keys.lead_snapshot(lead_id), json.dumps(snapshot, sort_keys=True), ex=defaults.HISTORY_TTL_SECONDS)


def effect_state(conn: redis.Redis, lead_id: str, effect: str) -> str | None:
    """The recorded state of a once-only effect (e.g. "campaign:6", "offers") of a lead, or None."""
    return text(conn.hget(keys.lead_effects(lead_id), effect))


def mark_effect(conn: redis.Redis, lead_id: str, effect: str, state: str) -> None:
    """Record the state of a once-only effect of a lead ("pending" before its call, "done" after)."""
    with conn.pipeline(transaction=False) as pipe:  # one round trip
        pipe.hset(keys.lead_effects(lead_id), effect, state)
        pipe.expire(keys.lead_effects(lead_id), defaults.HISTORY_TTL_SECONDS)
        pipe.execute()


def activity_seen(conn: redis.Redis, lead_id: str, fingerprint: str) -> bool:
    """Whether this activity already reached LionDesk."""
    return bool(conn.exists(keys.activity_dedupe(lead_id, fingerprint)))


def mark_activity(conn: redis.Redis, lead_id: str, fingerprint: str) -> None:
    """Record that an activity reached LionDesk (kept as long as the lead's history)."""
    conn.set(keys.activity_dedupe(lead_id, fingerprint), 1, ex=defaults.HISTORY_TTL_SECONDS)


def claim_contact(conn: redis.Redis, contact_id: int | str, lead_id: str) -> bool:
    """Link a LionDesk contact to a Real Geeks lead unless it is linked already; True if this call linked it."""
    return bool(conn.set(keys.contact_mapping(contact_id), lead_id, nx=True, ex=defaults.HISTORY_TTL_SECONDS))


_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def release_contact(conn: redis.Redis, contact_id: int | str, lead_id: str) -> None:
    """Drop a contact's reverse map if it still names `lead_id` (a stale map: that lead links another contact)."""
    conn.eval(_RELEASE, 1, keys.contact_mapping(contact_id), lead_id)


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
        found.append((lead_id, text_hash(link),
                      json.loads(snapshot) if snapshot else None))
    return found
