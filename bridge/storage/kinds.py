"""The kinds of lead-history entries, named once: what writes the story and what reads it (the console,
the CLI, the job tools, the reverse sync) use these names, never the bare text.

The values are what is stored (`kind` of each entry): renaming one would orphan the entries already
written, so a value never changes; a new kind gets a new name.
"""

# -- a delivery and its jobs (intake, relay, workers, support) ----------------------------------
RECEIVED = "received"
"""A delivery arrived (the intake's record, written by the relay): its action and status."""
REJECTED = "rejected"
"""The relay refused a delivery's payload (schema errors)."""
DUPLICATE = "duplicate"
"""A delivery repeated an earlier one: acknowledged, nothing done (its `event_id` is the earlier one)."""
PROCESSED = "processed"
"""A job finished: its summary."""
ATTEMPT_FAILED = "attempt_failed"
"""An attempt of a job failed: retrying, waiting or failed for good."""
ATTEMPT_INTERRUPTED = "attempt_interrupted"
"""An attempt was cut short by Redis going away; it is retried."""
ATTEMPT_ABANDONED = "attempt_abandoned"
"""An attempt's worker died (its heartbeat stopped); the job is retried at once."""
REPLAYED = "replayed"
"""Support put a failed job back on its queue."""
RETRIED_NOW = "retried_now"
"""Support ran a job waiting for its next attempt now (the attempt counts against its retry budget)."""
DISMISSED = "dismissed"
"""Support took a failed job out of the failed store, with a reason."""
CALL = "call"
"""One outbound call made for the lead (service, method, path, status, time)."""
UNREADABLE = "unreadable"
"""Not stored: what `history.read` returns for an entry it cannot parse within the JSON limits."""

# -- the forward sync (Real Geeks → LionDesk) -------------------------------------------------
CONTACT_LINKED = "contact_linked"
CONTACT_CREATED = "contact_created"
CONTACT_UPDATED = "contact_updated"
UPDATE_BEFORE_CREATE = "update_before_create"
STALE_UPDATE_SKIPPED = "stale_update_skipped"
LEAD_CREATED = "lead_created"
LEAD_RECOVERED = "lead_recovered"
"""A LionDesk lead an earlier attempt created without recording it, found and recorded."""
NO_LEAD_SOURCE = "no_lead_source"
NO_CAMPAIGN = "no_campaign"
CAMPAIGN = "campaign"
"""The lead's campaign was started."""
OFFERS = "offers"
"""Team-rollout lead offers were created."""
EFFECT_ALREADY_DONE = "effect_already_done"
ASSIGNED = "assigned"
UNASSIGNED = "unassigned"
AGENT_NOT_FOUND = "agent_not_found"
ACTIVITY_DELIVERED = "activity_delivered"
ACTIVITY_NOT_DELIVERED = "activity_not_delivered"
"""Both LionDesk task channels refused an activity: recorded, and the lead goes on without it."""
V1_FAILED = "v1_failed"
"""The LionDesk v1 channel failed an activity; it went as a task instead."""
EFFECT_UNVERIFIED = "effect_unverified"
"""LionDesk could not say whether a pending once-only effect happened; not repeated."""
LEAD_FIELDS_DROPPED = "lead_fields_dropped"
"""LionDesk refused optional lead fields; the lead was sent again without them."""
TAGS_KEPT = "tags_kept"
"""Tags agents added in LionDesk kept when Real Geeks' tags changed."""

# -- both directions ----------------------------------------------------------------------------
CONFLICT_RESOLVED = "conflict_resolved"
"""A field changed on both sides: who won and why."""

# -- the reverse sync (LionDesk → Real Geeks) -------------------------------------------------
REVERSE_SYNC = "reverse_sync"
"""LionDesk changes written to Real Geeks."""
REVERSE_SYNC_DEFERRED = "reverse_sync_deferred"
"""A contact that failed on its own was handed to a job of its own."""
NOT_SYNCED_BACK = "not_synced_back"
LEAD_CREATED_FROM_LIONDESK = "lead_created_from_liondesk"

WRITTEN = frozenset(value for name, value in dict(globals()).items()
                    if name.isupper() and isinstance(value, str) and value != UNREADABLE)
"""Every kind an entry may be written with (`history.entry` refuses others: a misspelt kind is never read)."""
