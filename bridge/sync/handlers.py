"""Dispatch a stored event to the handler of its action."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def handle_event(context, event) -> str:
    """Process one event and return a one-line summary for the lead's history.

    Placeholder until the Real Geeks → LionDesk sync lands: the plumbing around it
    (queue, retries, failed store, history) is real.
    """
    log.info("event %s (%s) received for lead %s: sync not implemented yet",
             event.id, event.action, event.lead_id)
    return "logged (sync not implemented yet)"
