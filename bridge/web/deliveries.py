"""The console's Deliveries page: every delivery Real Geeks made, newest first, filtered by outcome,
action and time, paginated; rejected ones with their errors as sentences and the lead's name."""

from __future__ import annotations

from flask import render_template, request

from bridge.ops import deliveries
from bridge.web.console import bp, form_times, redis_client

ACTIONS = ("created", "updated", "activity_added", "user_created", "user_updated", "user_deleted", "unknown")
"""Real Geeks actions offered by the filter (any other is still listed under "any")."""


@bp.get("/deliveries")
def deliveries_log():
    """One page of the deliveries log."""
    values = {name: (request.args.get(name) or "").strip() for name in ("outcome", "action", "since", "until")}
    times = form_times(values)
    if values["outcome"] and values["outcome"] not in deliveries.OUTCOMES:
        values["outcome"] = ""
    wanted = deliveries.DeliveryFilter(outcome=values["outcome"] or None, action=values["action"] or None,
                                       since=times.get("since"), until=times.get("until"))
    before = request.args.get("before", type=float)
    found = deliveries.page(redis_client(), wanted, before=before, size=deliveries.PAGE_SIZE)
    return render_template("deliveries.html", page=found, values=values, outcomes=deliveries.OUTCOMES,
                           actions=ACTIONS, first_page=before is None,
                           query={name: value for name, value in values.items() if value})
