"""A neutral snapshot of the synced fields: what both directions compare, and how echoes are recognised.

A snapshot maps field names (`SNAPSHOT_FIELDS`) to values in one comparable form:
names and text stripped, e-mails casefolded, phones E.164, states as USPS codes, tags
a sorted list without the configured extra tags, hotness by its configured name, the
assigned agent by LionDesk e-mail casefolded. A Real Geeks lead and a LionDesk contact
that agree give IDENTICAL snapshots, so the sync can store the last agreed snapshot and
treat anything equal to it as an echo of its own write.

Real Geeks snapshots are PARTIAL (a key absent from the delivery is absent, "" clears)
and are read through the very translation the bridge writes (`contact.contact_body`),
so a value LionDesk cannot hold whole (trimmed, dropped tag) is compared as LionDesk
holds it. LionDesk snapshots have every field the contact reports; a field LionDesk
does not report (no `addresses`, an agent id we cannot name) is left out, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from bridge.translate import limits, phones
from bridge.translate.contact import CONTACT_FIELDS, SyncedField, contact_body, liondesk_contact, phone_region
from bridge.translate.realgeeks import CLEARED
from bridge.translate.states import state_code
from bridge.translate.text import folded
from bridge.translate.translation import Translation

SNAPSHOT_FIELDS = (*(field.name for field in CONTACT_FIELDS), "tags", "hotness", "agent_email")
"""Every field a snapshot may hold."""

REALGEEKS, LIONDESK = "realgeeks", "liondesk"
"""The two sides of a conflict (`Resolution.winner`)."""


def _blank(name: str):
    """The cleared value of one field ([] for tags, "" otherwise)."""
    return [] if name == "tags" else CLEARED


def empty_snapshot() -> dict:
    """A snapshot of a record that holds nothing: every field cleared (the base a new lead's snapshot merges into)."""
    return {name: _blank(name) for name in SNAPSHOT_FIELDS}


def comparable(field: SyncedField, value, region: str) -> str:
    """The comparable form of one text field's value: E.164 phones, casefolded e-mails, USPS states, stripped text."""
    if not value:
        return CLEARED
    text = str(value)
    if field.kind == "phone":
        return phones.normalize(text, region) or text.strip()
    if field.kind == "email":
        return folded(text)
    if field.kind == "state":
        return state_code(text)
    return text.strip()


def synced_tags(text: str | None, rules: Mapping) -> list[str]:
    """The tags of a contact's `tags` string that are synced: extra tags removed, sorted case-insensitively."""
    extras = {tag.casefold() for tag in limits.unique_tags(rules["contact"]["extra_tags"])}
    return sorted((tag for tag in limits.split_tags(text) if tag.casefold() not in extras), key=str.casefold)


def hotness_name(name: str | None, rules: Mapping) -> str:
    """A hotness name in comparable form: spelled as in `hotness.by_urgency` when it is one of those."""
    name = (name or "").strip()
    for configured in rules["hotness"]["by_urgency"].values():
        if configured and folded(configured) == folded(name):
            return configured.strip()
    return name


def _read_record(contact: Mapping, address: Mapping | None, rules: Mapping) -> dict:
    """Snapshot the text fields and tags of a LionDesk contact body and address record, keys present only."""
    region = phone_region(rules)
    records = {"contact": contact, "address": address or {}}
    snapshot = {field.name: comparable(field, records[field.record][field.liondesk], region)
                for field in CONTACT_FIELDS if field.liondesk in records[field.record]}
    if "tags" in contact:
        snapshot["tags"] = synced_tags(contact["tags"], rules)
    return snapshot


def snapshot_from_realgeeks(lead: Mapping, rules: Mapping) -> dict:
    """Snapshot a loaded Real Geeks lead: only the fields it carries, "" for cleared ones."""
    translation = contact_body(lead, rules)
    snapshot = _read_record(translation.body, translation.address, rules)
    if translation.hotness is not None:
        snapshot["hotness"] = hotness_name(translation.hotness, rules)
    if translation.agent_email is not None:
        snapshot["agent_email"] = folded(translation.agent_email)
    return snapshot


def home_address(contact: Mapping, rules: Mapping) -> dict | None:
    """The contact's address record of the configured type (else its first); None if `addresses` is not reported.

    A contact with no address record at all has every address field known empty.
    """
    if "addresses" not in contact:
        return None
    addresses = [record for record in contact["addresses"] or () if isinstance(record, Mapping)]
    wanted = folded(rules["contact"]["address_type"])
    chosen = next((record for record in addresses if folded(record.get("type")) == wanted),
                  addresses[0] if addresses else None)
    if chosen is None:
        return {field.liondesk: CLEARED for field in CONTACT_FIELDS if field.record == "address"}
    return chosen


def _liondesk_hotness(contact: Mapping, hotness_names: Mapping | None) -> str | None:
    """The hotness name of a LionDesk contact ("" when none), or None when it cannot be told."""
    if "hotness" in contact:
        return (contact["hotness"] or {}).get("name") or CLEARED
    if "hotness_id" in contact:
        if not contact["hotness_id"]:
            return CLEARED
        names = {str(key): value for key, value in (hotness_names or {}).items()}
        return names.get(str(contact["hotness_id"]))
    return None


def _liondesk_agent(contact: Mapping, user_emails: Mapping | None) -> str | None:
    """The e-mail of a LionDesk contact's assigned user ("" when none), or None when it cannot be told."""
    if "assigned_user_id" not in contact or user_emails is None:
        return None
    if not contact["assigned_user_id"]:
        return CLEARED
    emails = {str(key): value for key, value in user_emails.items()}
    return emails.get(str(contact["assigned_user_id"]))


def snapshot_from_liondesk(contact: Mapping, rules: Mapping, *, user_emails: Mapping | None = None,
                           hotness_names: Mapping | None = None) -> dict:
    """Snapshot a LionDesk contact as read from the API (address from its `addresses`).

    `user_emails` (LionDesk user id → e-mail) names the assigned agent and
    `hotness_names` (hotness id → name) the hotness when the contact has only its id.
    """
    snapshot = _read_record(contact, home_address(contact, rules), rules)
    hotness = _liondesk_hotness(contact, hotness_names)
    if hotness is not None:
        snapshot["hotness"] = hotness_name(hotness, rules)
    agent = _liondesk_agent(contact, user_emails)
    if agent is not None:
        snapshot["agent_email"] = folded(agent)
    return snapshot


def merge_snapshot(old: Mapping, new: Mapping) -> dict:
    """Apply a partial snapshot to a stored one: keys absent from `new` stay as they were, "" clears."""
    return {**old, **new}


def diff(old: Mapping, new: Mapping) -> dict:
    """The fields of `new` whose value differs from `old` (a field `old` lacks counts as cleared)."""
    return {name: value for name, value in new.items() if old.get(name, _blank(name)) != value}


def liondesk_patch(changed: Mapping, rules: Mapping, *, hotness_ids: Mapping | None = None,
                   user_ids: Mapping | None = None) -> Translation:
    """Turn changed snapshot fields into a LionDesk contact PATCH body and address record ("" clears)."""
    return liondesk_contact(changed, rules, hotness_ids=hotness_ids, user_ids=user_ids)


def urgency_for(hotness: str, rules: Mapping) -> str | None:
    """The Real Geeks urgency of a hotness name: the first urgency mapped to it, "" when cleared, None when none is."""
    if hotness == CLEARED:
        return CLEARED
    for urgency, name in rules["hotness"]["by_urgency"].items():
        if name and folded(name) == folded(hotness):
            return urgency
    return None


def realgeeks_patch(changed: Mapping, rules: Mapping) -> dict:
    """Turn changed snapshot fields into a Real Geeks Incoming PATCH body ("" unsets; needs the v2 PATCH).

    Phones go back in the same display format LionDesk gets. The assigned agent is not
    a lead field in Real Geeks: see `realgeeks_assignment`.
    """
    region = phone_region(rules)
    body = {}
    for field in CONTACT_FIELDS:
        if field.name in changed:
            value = changed[field.name]
            body[field.name] = phones.display(value, region) if field.kind == "phone" and value else value
    if "tags" in changed:
        body["tags"] = list(changed["tags"])
    urgency = urgency_for(changed["hotness"], rules) if "hotness" in changed else None
    if urgency is not None:
        body["urgency"] = urgency
    return body


def realgeeks_assignment(changed: Mapping, rules: Mapping, *, realgeeks_user_ids: Mapping) -> dict | None:
    """The Real Geeks activity assigning the lead as LionDesk now does; None if the agent is unchanged or unknown.

    `realgeeks_user_ids` maps Real Geeks user e-mails to Real Geeks user ids (Users
    API). An `agents.liondesk_email` override is followed backwards. Whether the
    Incoming API accepts `was_unassigned` is (unknown); it is what we send for "".
    """
    if "agent_email" not in changed:
        return None
    source = rules["reverse"]["source_name"]
    email = changed["agent_email"]
    if email == CLEARED:
        return {"type": "was_unassigned", "source": source, "description": "Lead was unassigned in LionDesk"}
    user_id = None
    realgeeks_email = email
    for key, value in rules["agents"]["liondesk_email"].items():
        if value and folded(value) == folded(email):
            if key.strip().isdigit():
                user_id = key.strip()
            else:
                realgeeks_email = key.strip()
            break
    if user_id is None:
        ids = {folded(key): value for key, value in realgeeks_user_ids.items()}
        user_id = ids.get(folded(realgeeks_email))
    if user_id is None:
        return None
    return {"type": "was_assigned", "source": source, "description": f"Lead was assigned to {email} in LionDesk",
            "user": {"id": str(user_id)}}


def realgeeks_new_lead(snapshot: Mapping, rules: Mapping, *, lead_id: str) -> dict:
    """A Real Geeks Incoming create body for a LionDesk contact (when `reverse.create_leads_from_liondesk`)."""
    filled = {name: value for name, value in snapshot.items() if value}
    return {"id": lead_id, "source": rules["reverse"]["source_name"], **realgeeks_patch(filled, rules)}


@dataclass(frozen=True)
class Resolution:
    """The outcome of a field changed on both sides: who wins, with what value, and why (for the history)."""

    field: str
    winner: str
    value: object
    reason: str


def _when(ns: int) -> str:
    """An instant in nanoseconds as ISO 8601 UTC text, all nine fractional digits kept."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return f"{datetime.fromtimestamp(seconds, tz=timezone.utc):%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"


def resolve_conflict(field: str, rg_value, rg_time_ns: int | None, ld_value, ld_time_ns: int | None) -> Resolution:
    """Decide a field changed on both sides: the later change wins; Real Geeks wins ties and unknown times.

    Real Geeks wins what cannot be told apart because it is where the lead came from.
    """
    if rg_value == ld_value:
        return Resolution(field, REALGEEKS, rg_value, f"{field}: both sides hold the same value")
    if ld_time_ns is not None and (rg_time_ns is None or ld_time_ns > rg_time_ns):
        since = f", after Real Geeks at {_when(rg_time_ns)}" if rg_time_ns is not None else \
            "; Real Geeks' change time is unknown"
        return Resolution(field, LIONDESK, ld_value, f"{field}: changed in LionDesk at {_when(ld_time_ns)}{since}")
    if rg_time_ns is None:
        return Resolution(field, REALGEEKS, rg_value, f"{field}: change times unknown; Real Geeks wins")
    if ld_time_ns is None:
        return Resolution(field, REALGEEKS, rg_value,
                          f"{field}: changed in Real Geeks at {_when(rg_time_ns)}; LionDesk's change time is unknown")
    if rg_time_ns == ld_time_ns:
        return Resolution(field, REALGEEKS, rg_value,
                          f"{field}: changed on both sides at {_when(rg_time_ns)}; Real Geeks wins ties")
    return Resolution(field, REALGEEKS, rg_value,
                      f"{field}: changed in Real Geeks at {_when(rg_time_ns)}, after LionDesk at {_when(ld_time_ns)}")
