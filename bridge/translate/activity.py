"""Real Geeks activities: what each means for LionDesk, how to recognise one seen before, how to write it.

LionDesk v2 has no notes or timeline endpoint (docs/vendors/liondesk-api.md §6), so an activity
reaches the contact as a v1 NewActivity when the v1 channel is on and v1 knows its
type, as a v1 NewComment for notes, and otherwise as a COMPLETED v2 task whose
description says what happened.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation

from bridge.translate import limits, liondesk
from bridge.translate.liondesk import (V1_COMMENT_STANDARD, V1_INTEGER_FIELDS, V1_PROPERTY_FIELDS, liondesk_time,
                                      v1_time)
from bridge.translate.realgeeks import CLEARED, Instant, normalize_id, parse_instant
from bridge.translate.rules import lookup
from bridge.translate.text import folded
from bridge.translate.translation import Translation

ASSIGN, UNASSIGN, NOTE, TIMELINE, IGNORE = "assign", "unassign", "note", "timeline", "ignore"
FOLLOWUP, FOLLOWUP_DONE = "followup", "followup_done"
"""What an activity means for LionDesk (see `classify_activity`)."""

FOLLOWUP_TYPES = {"created_a_followup_for": FOLLOWUP, "completed_a_followup_for": FOLLOWUP_DONE}
"""Real Geeks follow-up activities (docs/vendors/realgeeks-api.md §4.2, FOLLOW): the event is in `metadata.event`."""



def created_ns(activity: Mapping) -> int | None:
    """The activity's `created` in nanoseconds (loaded Instant or raw text), or None when it has none."""
    created = activity.get("created")
    if isinstance(created, Instant):
        return created.ns
    if isinstance(created, str) and created.strip():
        try:
            return parse_instant(created).ns
        except ValueError:
            return None
    return None


def _created(activity: Mapping) -> Instant | None:
    """The activity's `created` as an Instant, or None when it has none."""
    created = activity.get("created")
    if isinstance(created, Instant):
        return created
    ns = created_ns(activity)
    return Instant(ns, created) if ns is not None else None


def most_recent(activities: Iterable[Mapping]) -> Mapping | None:
    """The latest of `activities` by `created`; one without a time counts as oldest, and later in the list wins ties."""
    ranked = [(_rank(act), index, act) for index, act in enumerate(activities)]
    return max(ranked, key=lambda item: item[:2])[2] if ranked else None


def _rank(activity: Mapping) -> int:
    """Sort key of an activity's time: its nanoseconds, or -1 when it has no time."""
    ns = created_ns(activity)
    return -1 if ns is None else ns


def _content_hash(activity: Mapping) -> str:
    """A hash of what an activity says (description and property), for activities with no time."""
    content = {"description": activity.get("description") or "", "property": activity.get("property") or {}}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(lead_id: str, activity: Mapping) -> str:
    """Return a stable dedupe key (32 hex digits) of a lead's activity, equal in every delivery that carries it.

    Real Geeks may send the same activity inside `created` and again in an
    `activity_added`; (lead id, type, created to the nanosecond, user id) names it in
    both (docs/vendors/realgeeks-api.md §5). Without a `created` the content stands in for the time.
    """
    ns = created_ns(activity)
    user = activity.get("user") or {}
    parts = [normalize_id(str(lead_id)), str(activity.get("type") or "").strip(),
             "" if ns is None else str(ns), str(user.get("id") or "").strip()]
    if ns is None:
        parts.append(_content_hash(activity))
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def classify_activity(activity: Mapping, rules: Mapping | None = None) -> str:
    """Return what an activity means for LionDesk: "assign", "unassign", "note", "timeline" or "ignore".

    With `rules`, types listed in `activities.ignore` and our own echoes (activities
    whose source is `reverse.source_name`, written back by the reverse sync) are ignored.
    A lender's assignment stays on the timeline: LionDesk has no lenders to assign to.
    """
    kind = str(activity.get("type") or "").strip()
    if not kind:
        return IGNORE
    if rules is not None:
        ignored = {folded(name) for name in rules["activities"]["ignore"]}
        if folded(kind) in ignored or folded(activity.get("source")) == folded(rules["reverse"]["source_name"]):
            return IGNORE
    user = activity.get("user") or {}
    if kind == "was_assigned":
        is_lender = folded(user.get("role")) == "lender"
        return ASSIGN if user.get("id") and not is_lender else TIMELINE
    if kind == "was_unassigned":
        return UNASSIGN
    if kind == "note":
        return NOTE
    if kind in FOLLOWUP_TYPES and followup_event(activity) is not None:
        return FOLLOWUP_TYPES[kind]
    return TIMELINE


def followup_event(activity: Mapping) -> Mapping | None:
    """A follow-up activity's event (`metadata.event` with an `id`), or None when it has none."""
    event = (activity.get("metadata") or {}).get("event") if isinstance(activity.get("metadata"), Mapping) else None
    return event if isinstance(event, Mapping) and str(event.get("id") or "").strip() else None


def followup_task(activity: Mapping) -> dict:
    """What a Real Geeks follow-up becomes as a LionDesk task: event id, title, description (with the purpose), due time.

    The follow-ups page's example has no `source` or `description` on the activity, so
    everything comes from the event; a missing title reads "Real Geeks follow-up".
    """
    event = followup_event(activity) or {}
    title = str(event.get("title") or "").strip() or "Real Geeks follow-up"
    lines = [str(event.get("description") or "").strip()]
    purpose = str(event.get("purpose") or "").strip()
    if purpose:
        lines.append(f"Purpose: {purpose}")
    if event.get("all_day") is True:
        lines.append("All day")
    try:
        due = parse_instant(str(event["happens_at"])) if event.get("happens_at") else None
    except ValueError:
        due, lines = None, [*lines, f"When: {event['happens_at']}"]  # kept as text rather than lost
    return {"event_id": normalize_id(str(event.get("id") or "")), "title": title,
            "description": "\n".join(line for line in lines if line),
            "due_at": liondesk_time(due) if due is not None else None}


def liondesk_email_of(realgeeks_user: Mapping, rules: Mapping) -> str | None:
    """The LionDesk e-mail of a Real Geeks user: an `agents.liondesk_email` override (by id or e-mail), else theirs."""
    overrides = rules["agents"]["liondesk_email"]
    email = str(realgeeks_user.get("email") or "").strip()
    mapped = lookup(overrides, str(realgeeks_user.get("id") or "")) or lookup(overrides, email)
    return (mapped or email).strip() or None


def assigned_agent_email(lead: Mapping, rules: Mapping) -> str | None:
    """The LionDesk e-mail of the agent a lead is assigned to: "" when unassigned, None when the lead does not say.

    The latest assignment activity decides. One naming its user by id only (the Incoming
    form other integrations use) says nothing here: the sync resolves it through the Users
    API. The deprecated `agent_email` is not an assignment (docs/vendors/realgeeks-api.md §2.2).
    """
    assignments = [act for act in lead.get("activities") or ()
                   if _assignment_kind(act, rules) in (ASSIGN, UNASSIGN)]
    latest = most_recent(assignments)
    if latest is None:
        return None
    if _assignment_kind(latest, rules) == UNASSIGN:
        return CLEARED
    return liondesk_email_of(latest.get("user") or {}, rules)


def _assignment_kind(activity: Mapping, rules: Mapping) -> str:
    """`classify_activity`, except that our own write-backs count: the lead Real Geeks holds includes them."""
    return classify_activity({**activity, "source": ""}, rules)


def _label(activity: Mapping) -> str:
    """A readable name of an activity type ("property_viewed" → "Property viewed")."""
    return str(activity.get("type") or "activity").replace("_", " ").strip().capitalize()


def price_text(text) -> str:
    """Format a numeric-string price as dollars ("100500.90" → "$100,500.90"); other text unchanged."""
    try:
        return f"${Decimal(str(text)):,}"
    except (InvalidOperation, ValueError):
        return str(text)


def property_summary(prop: Mapping | None) -> str:
    """One line naming a property: address, price, status, MLS number and link, whichever are known."""
    prop = prop or {}
    place = ", ".join(str(prop[key]).strip() for key in ("street_address", "city") if prop.get(key))
    region = " ".join(str(prop[key]).strip() for key in ("state", "zip") if prop.get(key))
    parts = [", ".join(part for part in (place, region) if part)]
    if prop.get("listing_price"):
        parts.append(price_text(prop["listing_price"]))
    rooms = [f"{prop[key]} {label}" for key, label in (("beds", "bd"), ("full_baths", "ba"),
                                                        ("half_baths", "half ba")) if prop.get(key) not in (None, "")]
    if rooms:
        parts.append(", ".join(rooms))
    if prop.get("listing_status"):
        parts.append(str(prop["listing_status"]))
    if prop.get("mls"):
        parts.append(f"MLS {prop['mls']}")
    if prop.get("url"):
        parts.append(str(prop["url"]))
    return " · ".join(part for part in parts if part)


def describe(activity: Mapping) -> str:
    """Say in a few lines what happened: type, description, property, who and when."""
    lines = [f"Real Geeks: {_label(activity)}"]
    if activity.get("description"):
        lines.append(str(activity["description"]).strip())
    summary = property_summary(activity.get("property"))
    if summary:
        lines.append(f"Property: {summary}")
    user = activity.get("user") or {}
    who = " ".join(part for part in (str(user.get("name") or "").strip(),
                                     f"<{user['email']}>" if user.get("email") else "") if part)
    if who:
        lines.append(f"By: {who}")
    created = _created(activity)
    if created is not None:
        lines.append(f"When: {created.datetime:%Y-%m-%d %H:%M:%S} UTC")
    return "\n".join(lines)


def v1_type(activity: Mapping, rules: Mapping) -> str | None:
    """The LionDesk v1 NewActivity type of a Real Geeks activity, or None when v1 has none."""
    return lookup(rules["activities"]["v1_types"], activity.get("type"))


def v1_property(prop: Mapping | None) -> dict:
    """The v1 PROPERTY object of a Real Geeks property: the fields v1 knows, empty ones left out.

    A count v1 takes as an integer but Real Geeks sent otherwise (2.5 baths) is left out
    rather than truncated; `property_summary` carries it in the text.
    """
    prop = prop or {}
    return {name: prop[name] for name in V1_PROPERTY_FIELDS if prop.get(name) not in (None, CLEARED, [])
            and not (name in V1_INTEGER_FIELDS and not isinstance(prop[name], int))}


def _contact_reference(lead_id: str | None, contact_id) -> dict:
    """How a v1 call names its contact: LionDesk's id when we have it, else ours (`contactid`)."""
    if contact_id is not None:
        return {"liondeskcontactid": contact_id}
    return {"contactid": normalize_id(lead_id)} if lead_id else {}


def v1_activity(activity: Mapping, lead: Mapping, rules: Mapping, *, contact_id=None) -> Translation | None:
    """Build a v1 NewActivity call for an activity, or return None when v1 has no such type (use a task instead).

    `contact_id` is the LionDesk contact id (v1 `liondeskcontactid`); without it the
    call names the contact by our lead id (`contactid`), which only works for contacts
    v1 itself created (unknown whether v1 ids equal v2 ids; we assume they do).
    """
    kind = v1_type(activity, rules)
    if kind is None:
        return None
    body = {"action": "NewActivity", "type": kind, **_contact_reference(lead.get("id"), contact_id)}
    site = {"siteid": lead.get("site_uuid"), "sitedomain": lead.get("site_domain"),
            "description": activity.get("description")}
    body.update({name: str(value) for name, value in site.items() if value})
    created = _created(activity)
    if created is not None:
        body["created"] = v1_time(created)
    prop = v1_property(activity.get("property"))
    if prop:
        body["property"] = prop
    body, trims = limits.fit("v1_activity", body, limits.V1_ACTIVITY)
    return Translation(body=liondesk.checked(liondesk.V1_ACTIVITY, body), trims=trims)


def v1_comment(activity: Mapping, *, lead_id: str | None = None, contact_id=None) -> Translation:
    """Build a v1 NewComment call (a standard comment) saying what happened; used for notes."""
    body = {"action": "NewComment", "type": V1_COMMENT_STANDARD, "description": describe(activity),
            **_contact_reference(lead_id, contact_id)}
    body, trims = limits.fit("v1_comment", body, limits.V1_COMMENT)
    return Translation(body=liondesk.checked(liondesk.V1_COMMENT, body), trims=trims)


def task_body(activity: Mapping, lead: Mapping, rules: Mapping, *, contact_id,
              assigned_user_id=None) -> Translation:
    """Build a COMPLETED v2 task on the contact that records an activity (type, description, property, when).

    Completed, so it shows on the contact's history without reminding anyone; due at
    the activity's time, so it sorts where it happened.
    """
    body = {"contact_id": contact_id, "action_type": rules["activities"]["task_action_type"],
            "status": "complete", "description": describe(activity)}
    created = _created(activity)
    if created is not None:
        body["due_at"] = liondesk_time(created)
    if lead.get("site_login_url"):
        body["notes"] = f"Log in as this lead: {lead['site_login_url']}"
    if assigned_user_id is not None:
        body["assigned_user_id"] = assigned_user_id
    body, trims = limits.fit("task", body, limits.TASK)
    return Translation(body=liondesk.checked(liondesk.TASK_BODY, body), trims=trims)
