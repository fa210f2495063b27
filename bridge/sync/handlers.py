"""Dispatch a stored event to the handler of its action, under the lead's lock."""

from __future__ import annotations

import logging

from bridge.storage.locks import lead_lock
from bridge.sync import forward
from bridge.translate.realgeeks import load_event

log = logging.getLogger(__name__)

LEAD_HANDLERS = {
    "created": forward.upsert,
    "unknown": forward.upsert,  # "update, or create if missing" (docs/vendors/realgeeks-api.md §1.4)
    "updated": forward.update,
    "activity_added": forward.add_activities,
}


def handle_event(context, event) -> str:
    """Process one event and return a one-line summary for the lead's history."""
    lead = load_event(event.action, event.payload())
    if event.action == "user_updated":
        return refresh_agents(context, lead)
    job = forward.Job(context=context, lead=lead, event_id=event.id, received_ns=forward.received_ns(event))
    with context.telling(job.lead_id, event.id), lead_lock(context.redis, job.lead_id):
        LEAD_HANDLERS[event.action](job)
    return "; ".join(job.done) or "nothing to change"


def refresh_agents(context, user: dict) -> str:
    """`user_updated`: forget cached agent lists so the next assignment sees the change."""
    clients = context.clients
    clients.liondesk.invalidate_reference("users")
    if clients.realgeeks is not None and user.get("site_uuid"):
        clients.realgeeks.invalidate_users(user["site_uuid"])
    return f"agent caches refreshed for Real Geeks user {user.get('id')}"
