"""Every tunable default of the bridge, in one place, each with its unit."""

WEBHOOK_MAX_BODY_BYTES = 1024 * 1024
"""Largest webhook body accepted, in bytes (1 MiB); larger bodies get 413."""

DEDUPE_TTL_SECONDS = 7 * 24 * 3600
"""How long an identical delivery is recognised as a repeat, in seconds (7 days,
the window Real Geeks' own receiver ignores repeats for)."""

EVENT_TTL_SECONDS = 90 * 24 * 3600
"""How long a stored webhook event (body, headers, outcome) is kept, in seconds."""

HISTORY_MAX_ENTRIES = 1000
"""Most entries kept in one lead's history list; the oldest are trimmed first."""

HISTORY_TTL_SECONDS = 365 * 24 * 3600
"""How long a lead's history and id mappings live after their last change, in seconds."""

EVENT_QUEUE = "events"
"""Name of the RQ queue that carries one job per accepted webhook event."""

POLL_QUEUE = "poll"
"""Name of the RQ queue that carries the LionDesk poll jobs."""

RETRY_INTERVALS_SECONDS = (30, 120, 600, 1800, 7200, 21600)
"""The retry ladder for retryable failures, in seconds between attempts
(30 s, 2 min, 10 min, 30 min, 2 h, 6 h): it spans a LionDesk outage of hours.
BRIDGE_RETRY_INTERVALS overrides it (comma-separated seconds)."""

JOB_TIMEOUT_SECONDS = 25
"""Longest a single job may run, in seconds; under the 30 s a Heroku dyno gets
between SIGTERM and SIGKILL, so a warm shutdown always finishes the job in hand."""

WORKER_MAINTENANCE_SECONDS = 60
"""How often a worker sweeps RQ registries, in seconds; this is what re-queues a
job whose worker died with SIGKILL once its heartbeat has expired."""

FAILED_JOB_TTL_SECONDS = 365 * 24 * 3600
"""How long a failed job stays in the failed store for inspection and replay, in seconds."""

REDIS_CONNECT_TIMEOUT_SECONDS = 2.0
"""How long to wait for a Redis connection, in seconds; short so an outage turns
into a quick 503 rather than a hung request."""

REDIS_SOCKET_TIMEOUT_SECONDS = 5.0
"""How long to wait for one Redis reply, in seconds."""

REDIS_HEALTH_CHECK_SECONDS = 30
"""Idle seconds after which a pooled Redis connection is pinged before reuse
(Heroku Redis closes idle connections)."""

EMBEDDED_REDIS_DIR = ".bridge"
"""Folder (relative to the working directory) where the embedded local Redis keeps
its socket, pid file and data."""

PORT = 5000
"""Web port when PORT is unset."""

LIONDESK_API_URL = "https://api-v2.liondesk.com"
"""LionDesk v2 base URL."""

LIONDESK_V1_URL = "https://api.liondesk.com"
"""Legacy LionDesk v1 partner API URL."""

REALGEEKS_API_URL = "https://receivers.leadrouter.realgeeks.com/rest"
"""Real Geeks Incoming API base URL, including /rest."""

LIONDESK_POLL_SECONDS = 60
"""Seconds between two polls of LionDesk for changed contacts."""

LIONDESK_MAX_REQUESTS_PER_SECOND = 10.0
"""Ceiling on requests per second towards LionDesk, shared by every worker
(LionDesk publishes no limit, so we stay polite)."""

HTTP_CONNECT_TIMEOUT_SECONDS = 3.05
"""TCP connect timeout for outbound HTTP, in seconds (just over a TCP retransmit window)."""

HTTP_READ_TIMEOUT_SECONDS = 10.0
"""Read timeout for outbound HTTP, in seconds."""

REFERENCE_CACHE_TTL_SECONDS = 3600
"""How long cached LionDesk reference data (sources, routes, campaigns, users,
hotnesses) is trusted, in seconds."""

TOKEN_REFRESH_MARGIN_SECONDS = 300
"""Refresh a LionDesk access token this many seconds before it expires."""

LEAD_LOCK_TIMEOUT_SECONDS = 60
"""Lifetime of the per-lead lock, in seconds; longer than any job, so it only
expires when its holder died."""

LEAD_LOCK_WAIT_SECONDS = 30
"""How long a job waits for another job's per-lead lock before retrying later, in seconds."""

WAITING_RETRY_SECONDS = 300
"""How long a job waits before looking again when the bridge cannot work for a reason
an operator must fix (LionDesk needs re-authorisation), in seconds. Such waits do
not spend the job's retry budget."""

JOB_STATS_TTL_SECONDS = 2 * 24 * 3600
"""How long per-job outcome timestamps are kept for `bridge jobs stats`, in seconds."""
