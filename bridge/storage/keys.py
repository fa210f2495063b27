"""The one place that names Redis keys. Every key the bridge writes is built here.

RQ keeps its own keys under `rq:` (RQ_KEY_PREFIX); everything of ours under `bridge:`.
Real Geeks lead ids are normalised (lowercase, no dashes) before they become keys.
"""

import os

from bridge.config import Retention

PREFIX = os.environ.get("BRIDGE_KEY_PREFIX", "bridge:")
"""Prefix of every key of ours. Tests against a shared Redis set BRIDGE_KEY_PREFIX (and
RQ's own RQ_KEY_PREFIX) to a unique value so they can clean up exactly their own keys."""


lifetimes = Retention()
"""The record lifetimes in force in this process, in seconds: the defaults until `use_retention`
installs those of the settings (the web app and every worker context do, at start). Read it
as `keys.lifetimes.story`, never imported by value."""


def use_retention(retention: Retention) -> None:
    """Install the record lifetimes of this process's settings."""
    global lifetimes
    lifetimes = retention


def event(event_id: str) -> str:
    """Hash holding one stored webhook delivery: raw body, headers, receipt time, outcome."""
    return f"{PREFIX}event:{event_id}"


def events_by_time() -> str:
    """Sorted set of every stored event id, scored by receipt time (unix seconds)."""
    return f"{PREFIX}events"


def rejected_events() -> str:
    """Sorted set of signed deliveries that failed validation, scored by receipt time."""
    return f"{PREFIX}events:rejected"


def duplicate_deliveries() -> str:
    """Sorted set of repeated deliveries (what each repeated, when, for which lead), scored by receipt time."""
    return f"{PREFIX}events:duplicates"


def delivery_dedupe(digest: str) -> str:
    """String holding the event id first stored for a delivery (7-day TTL): the digest of its
    body, with its X-Lead-Router-Timestamp when it has one (bridge/intake/identity.py)."""
    return f"{PREFIX}dedupe:delivery:{digest}"


def lead_history(lead_id: str) -> str:
    """List of JSON entries: the append-only story of one Real Geeks lead (lifetime: `lifetimes.story`)."""
    return f"{PREFIX}lead:{lead_id}:history"


def lead_story_detail(lead_id: str) -> str:
    """List of JSON entries: the detail of a lead's story, each call and delivery (lifetime: `lifetimes.story_detail`)."""
    return f"{PREFIX}lead:{lead_id}:detail"


def lead_lock(lead_id: str) -> str:
    """Lock serialising all work on one Real Geeks lead across every worker."""
    return f"{PREFIX}lock:lead:{lead_id}"


def lead_pending_events(lead_id: str) -> str:
    """Sorted set of the events of a lead whose job is queued and not yet settled, scored by when added (unix s)."""
    return f"{PREFIX}lead:{lead_id}:pending"


def lead_mapping(lead_id: str) -> str:
    """Hash linking a Real Geeks lead to LionDesk: contact_id, liondesk_lead_id, site_uuid, ... (`mappings.LeadLink`)."""
    return f"{PREFIX}map:rg:{lead_id}"


def contact_mapping(contact_id: int | str) -> str:
    """String holding the Real Geeks lead id linked to a LionDesk contact."""
    return f"{PREFIX}map:ld:{contact_id}"


def lead_snapshot(lead_id: str) -> str:
    """JSON of the fields last synced between the two systems for one lead."""
    return f"{PREFIX}snapshot:{lead_id}"


def lead_effects(lead_id: str) -> str:
    """Hash of once-only effects already done for a lead (campaign started, offers made): the previous
    release's place for them, read (never written) until it expires; they now live in the link hash."""
    return f"{PREFIX}effects:{lead_id}"


def activity_dedupe(lead_id: str, fingerprint: str) -> str:
    """Marker that one Real Geeks activity already reached LionDesk: the previous release's
    form, one key per activity; read (never written) until the last of them expires."""
    return f"{PREFIX}dedupe:activity:{lead_id}:{fingerprint}"


def parked_events(lead_id: str) -> str:
    """List of event ids of one lead waiting for Real Geeks to send the lead's details, oldest first."""
    return f"{PREFIX}parked:lead:{lead_id}"


def parked_leads() -> str:
    """Sorted set of the lead ids with parked events, scored by when the first was parked (unix seconds)."""
    return f"{PREFIX}parked:leads"


def lead_activities(lead_id: str) -> str:
    """Sorted set of the activities of one lead that reached LionDesk (short fingerprints, scored by
    when, in unix seconds), at most ACTIVITY_MARKS_MAX of them (lifetime: `lifetimes.link`)."""
    return f"{PREFIX}activities:{lead_id}"


def liondesk_tokens() -> str:
    """Hash holding the LionDesk OAuth access token, refresh token and expiry."""
    return f"{PREFIX}liondesk:tokens"


def liondesk_token_lock() -> str:
    """Lock allowing a single LionDesk token refresh at a time across all processes."""
    return f"{PREFIX}liondesk:tokens:lock"


def liondesk_auth_state() -> str:
    """Hash describing LionDesk authorisation: ok, or needs re-authorisation and why."""
    return f"{PREFIX}liondesk:auth-state"


def liondesk_reference(kind: str) -> str:
    """Cached LionDesk reference list (lead-sources, campaigns, users, ...)."""
    return f"{PREFIX}liondesk:ref:{kind}"


def realgeeks_users(site_uuid: str) -> str:
    """Cached Real Geeks users list of one site."""
    return f"{PREFIX}realgeeks:users:{site_uuid}"


def realgeeks_unset_form() -> str:
    """String naming which published form of the Incoming v2 PATCH (the one that can unset) answered."""
    return f"{PREFIX}realgeeks:v2_patch_form"


def poll_state() -> str:
    """Hash describing the LionDesk poll: cursor, last run, outcome."""
    return f"{PREFIX}poll:state"


def poll_lock() -> str:
    """Lock guaranteeing one LionDesk poll at a time across every worker and machine."""
    return f"{PREFIX}poll:lock"


def job_outcomes(outcome: str, kind: str = "event") -> str:
    """Sorted set of job finish times for a kind of job (event, poll, contact) and an outcome, for stats."""
    return f"{PREFIX}stats:jobs:{outcome}" if kind == "event" else f"{PREFIX}stats:{kind}-jobs:{outcome}"


def failed_dismissed() -> str:
    """Hash of failed job ids dismissed by support, with the reason."""
    return f"{PREFIX}failed:dismissed"


def admin_login_failures(who: str) -> str:
    """Counter of recent failed console logins for one username or address."""
    return f"{PREFIX}admin:login-failures:{who}"


def admin_login_throttle(who: str) -> str:
    """Hash (failures, last_at) of recent failed console logins for one account: its growing delay."""
    return f"{PREFIX}admin:login-throttle:{who}"


def console_users() -> str:
    """Hash of the named console users: casefolded name → JSON record with the password's scrypt hash."""
    return f"{PREFIX}admin:users"


def console_session(session_digest: str) -> str:
    """Hash of one open console session (user, password version, opened at, address), expiring with it."""
    return f"{PREFIX}admin:session:{session_digest}"


def console_sessions() -> str:
    """Sorted set of every open console session's digest, scored by its expiry time (unix seconds)."""
    return f"{PREFIX}admin:sessions"


def alert_state(condition: str) -> str:
    """Hash of one alert condition's state: announced or not, since when, what it last saw."""
    return f"{PREFIX}alerts:state:{condition}"


def alert_tick() -> str:
    """Marker that one process is evaluating the alerts of the current period."""
    return f"{PREFIX}alerts:tick"


def webhook_secret_dev() -> str:
    """The generated webhook secret `bridge dev` keeps for local runs."""
    return f"{PREFIX}dev:webhook-secret"


def metric(name: str) -> str:
    """Hash of counters for one metric family, field = label value (shared by every process)."""
    return f"{PREFIX}metrics:{name}"


def liondesk_rate_limiter() -> str:
    """Time (unix microseconds) of the next free slot under the shared LionDesk request ceiling."""
    return f"{PREFIX}liondesk:rate-limiter"


def lead_search_token(token_digest: str) -> str:
    """Set of Real Geeks lead ids carrying one search token (a hashed email, phone or name).

    Written before the prefix index (lead_search_bucket) replaced it; only read now, until
    the last of these sets expires a history lifetime after its last write."""
    return f"{PREFIX}index:lead:{token_digest}"


def lead_search_bucket(bucket: int) -> str:
    """Sorted set (all scores 0) of `field:value<NUL>lead id` members: the leads indexed in one
    SEARCH_INDEX_BUCKET_SECONDS period (bucket = unix time // that period), searched by prefix."""
    return f"{PREFIX}index:lead-prefix:{bucket}"


def intake_stream() -> str:
    """Stream of accepted event ids waiting to become RQ jobs (the intake's outbox)."""
    return f"{PREFIX}intake"


def liondesk_reference_fresh(kind: str) -> str:
    """Marker that a LionDesk reference list was fetched moments ago (no refetch on a miss)."""
    return f"{PREFIX}liondesk:ref-fresh:{kind}"


def poll_slot(slot_start: int) -> str:
    """Marker that the LionDesk poll of the slot starting at `slot_start` (unix seconds) was claimed."""
    return f"{PREFIX}poll:slot:{slot_start}"


def liondesk_channels() -> str:
    """Hash: which LionDesk channel the bridge uses for tasks and how v1 answered (owner: clients/liondesk.py)."""
    return f"{PREFIX}liondesk:channels"


def liondesk_contact_search() -> str:
    """Hash: whether LionDesk honours `$or` contact searches, and the anchor contact that proves it (owner: clients/liondesk.py)."""
    return f"{PREFIX}liondesk:contact-search"


def liondesk_app_conflict() -> str:
    """Hash: LionDesk refused our app for another account's client id (owner: clients/oauth.py)."""
    return f"{PREFIX}liondesk:app-conflict"


def liondesk_connect_state(state: str) -> str:
    """String: a pending console "Connect LionDesk" round trip, by its `state` (owner: web/liondesk_connect.py)."""
    return f"{PREFIX}liondesk:connect:{state}"

def worker_beat(process: str) -> str:
    """Hash of one worker process's heartbeat (host, pid, RQ worker, last beat); expires when it stops beating."""
    return f"{PREFIX}worker:{process}:beat"


def worker_beats() -> str:
    """Sorted set of worker process names scored by their last beat (unix seconds), trimmed by age and count."""
    return f"{PREFIX}workers:beats"

