"""Every tunable default of the bridge, in one place, each with its unit."""

WEBHOOK_MAX_BODY_BYTES = 1024 * 1024
"""Largest webhook body accepted, in bytes (1 MiB); larger bodies get 413."""

WEB_REQUEST_READ_TIMEOUT_SECONDS = 10
"""Longest a client may take to send one whole request (headers and body) to the web process,
in seconds, from its first byte; then it is answered 408 and closed. 1 MiB in 10 s is 100 KB/s;
until then the request waits in memory, not in a thread (bridge/web/server.py)."""

DEDUPE_TTL_SECONDS = 7 * 24 * 3600
"""How long an identical delivery is recognised as a repeat, in seconds (7 days,
the window Real Geeks' own receiver ignores repeats for)."""

REALGEEKS_TIMESTAMP_MAX_AHEAD_SECONDS = 300
"""How far ahead of our receipt time an X-Lead-Router-Timestamp may lie and still order
a lead's changes, in seconds (5 minutes of clock skew). The header is not signed: a later
one would make every real change after it look stale, so past this, receipt time orders."""

REALGEEKS_TIMESTAMP_MAX_BEHIND_SECONDS = DEDUPE_TTL_SECONDS
"""How far behind our receipt time an X-Lead-Router-Timestamp may lie and still order a
lead's changes, in seconds (7 days): Real Geeks stamps a message when it queues it and
retries every 30 s without a cap, so a delivery after an outage is hours old; its own
receiver ignores messages older than 7 days. Past this, receipt time orders."""

EVENT_TTL_SECONDS = 90 * 24 * 3600
"""How long a stored webhook event (body, headers, outcome) is kept, in seconds."""

HISTORY_MAX_ENTRIES = 1000
"""Most entries kept in one lead's history list; the oldest are trimmed first."""

HISTORY_TTL_SECONDS = 365 * 24 * 3600
"""How long a lead's history and id mappings live after their last change, in seconds."""

PENDING_EVENT_TTL_SECONDS = 7 * 24 * 3600
"""How long an event counts as forward work waiting for its lead, in seconds (7 days), unless its job
settles first. Far longer than the retry ladder (under 9 hours) with room for days of waiting for
re-authorisation; it bounds what a job killed before it could say it settled leaves behind."""

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

WORKER_REDIS_BACKOFF_FIRST_SECONDS = 1.0
"""After Redis went away under a worker, seconds before the first try to reach it again."""

WORKER_REDIS_BACKOFF_MAX_SECONDS = 30.0
"""The longest wait between tries to reach Redis again, in seconds (the back-off doubles up to it)."""

WORKER_DEQUEUE_BLOCK_SECONDS = 4
"""How long an idle worker blocks waiting for a job, in seconds, before it comes round to
its maintenance again (RQ's own default, 405 s, would delay that for minutes). Under
REDIS_SOCKET_TIMEOUT_SECONDS: the process's pooled connections keep that timeout, and a
block outlasting it reads as a lost connection, which RQ answers with growing pauses
(up to a minute) before it looks at the queues again."""

WORKER_DEQUEUE_RECONNECT_MAX_SECONDS = 5.0
"""Longest pause, in seconds, between an idle worker's tries to reach Redis again (RQ's own
back-off, 60 s by default, would leave the first lead after an outage waiting that long)."""

WORKER_MAINTENANCE_SECONDS = 15
"""How often a worker runs RQ's own maintenance, in seconds: registry cleanup (RQ's
slow backstop for abandoned jobs, after their 85 s job heartbeat) and restarting a
scheduler that died or taking over the scheduler of a worker that did."""

WORKER_BEAT_SECONDS = 5.0
"""How often each worker process writes its heartbeat record, in seconds."""

WORKER_BEAT_TTL_SECONDS = 20
"""Lifetime of a worker's heartbeat record, in seconds (four missed beats): a worker
whose record expired is dead, its jobs are retried and its lead locks taken over."""

WORKER_BEATS_RETENTION_SECONDS = 7 * 24 * 3600
"""How long the index of worker processes remembers one it last heard from, in seconds:
"last worker seen at ..." reaches this far back."""

WORKER_BEATS_MAX = 1000
"""Most worker processes the heartbeat index remembers (newest kept); every restart
of a dyno is a new process."""

WORKER_SILENT_ALARM_SECONDS = 180
"""With no worker heard from for this long, in seconds, /healthz, /metrics and the
console say so (no lead is being processed)."""

REDIS_FULL_FREE_FRACTION = 0.01
"""Redis counts as full when less than this fraction of maxmemory (and at least
REDIS_FULL_FREE_MIN_BYTES) is free under the `noeviction` policy: a refused write frees its
own buffer at once, so a Redis refusing webhook bodies always shows a little room left."""

REDIS_FULL_FREE_MIN_BYTES = 64 * 1024
"""The least free memory below which Redis counts as full, in bytes (a few webhook bodies)."""

ABANDONED_SWEEP_LOCK_SECONDS = 10
"""Lifetime of the hold a sweep takes on RQ's registry-cleaning lock to retry the jobs of dead workers,
in seconds (the sweep takes milliseconds; the lock only outlives a sweeper that died)."""

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

LIONDESK_COMMUNICATIONS_URL = "https://communications.liondesk.com/api/v1"
"""Base URL of LionDesk Tasks v2.1 (docs/vendors/liondesk-api.md §4.14, §10: its own host)."""

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

LIONDESK_PAGE_SIZE = 100
"""Records asked for per page when listing LionDesk collections ($limit); LionDesk's
maximum is unpublished, so we stay at a size production clients use."""

RATE_LIMIT_BURST = 1
"""Requests allowed back to back before the shared LionDesk rate ceiling spaces them
out (1: every request waits its 1/rate share of a second)."""

RATE_LIMIT_MAX_WAIT_SECONDS = 10.0
"""Longest a caller sleeps for a LionDesk request slot, in seconds; a longer queue
sends the job back to the retry ladder instead of eating its run time."""

TOKEN_REFRESH_LOCK_SECONDS = 30
"""Lifetime of the LionDesk token-refresh lock, in seconds; longer than one token
request can take (connect + read timeouts), so it only expires when its holder died."""

TOKEN_STORE_WAIT_SECONDS = 15
"""How long a LionDesk refresh answer Redis refuses (away or full) is retried before the job
gives up on it, in seconds (under JOB_TIMEOUT_SECONDS; the answer then stays in the process
and is stored before its next token use)."""

TOKEN_REFRESH_WAIT_SECONDS = 15
"""How long a caller waits for another process's LionDesk token refresh, in seconds
(under JOB_TIMEOUT_SECONDS)."""

REALGEEKS_USERS_TTL_SECONDS = 3600
"""How long a Real Geeks site's cached users list is trusted, in seconds."""

SANDBOX_ACCESS_TOKEN_LIFETIME_SECONDS = 776_000
"""Lifetime of an access token the sandbox issues, in seconds (about 9 days, the value
in LionDesk's own token example); tests shorten it through the control API."""

SANDBOX_CALL_LOG_SIZE = 200_000
"""Most API calls the sandbox keeps in its call log, in entries (older ones drop off)."""

SANDBOX_RETRY_AFTER_SECONDS = 1
"""Retry-After the sandbox sends with an injected 429, in seconds."""

SANDBOX_WEBHOOK_TIMEOUT_SECONDS = 5.0
"""How long the sandbox waits for the bridge to answer one simulated Real Geeks webhook, in seconds."""

ADMIN_SESSION_SECONDS = 8 * 3600
"""Longest a support-console login lasts, in seconds (a working day); then log in again."""

ADMIN_LOGIN_WINDOW_SECONDS = 15 * 60
"""How long failed console logins are remembered, in seconds: a locked-out username or
address may try again this long after its last counted failure."""

ADMIN_LOGIN_MAX_FAILURES_PER_ADDRESS = 5
"""Failed console logins from one client address (within the window) before that address
must wait out the window; a browser its user logged in from before is exempt."""

ADMIN_LOGIN_FREE_FAILURES_PER_ACCOUNT = 10
"""Failed console logins for one account (from browsers it never logged in from) before each
further try must wait a growing delay."""

ADMIN_LOGIN_FIRST_DELAY_SECONDS = 2
"""The first wait imposed on an account past its free failures, in seconds; each further
failure doubles it, up to ADMIN_LOGIN_MAX_DELAY_SECONDS."""

ADMIN_LOGIN_MAX_DELAY_SECONDS = 60
"""The longest wait between two tries at one account, in seconds: an attacker gets at
most one guess a minute, and the owner is slowed, never locked out."""

ADMIN_LOGIN_MAX_FAILURES_PER_DEVICE = 5
"""Failed console logins from one trusted browser (within the window) before it is
treated like any other browser: a stolen device cookie buys a handful of guesses."""

ADMIN_DEVICE_SECONDS = 90 * 24 * 3600
"""How long a browser that logged in stays trusted for its user's logins, in seconds (90 days)."""

ADMIN_PASSWORD_MIN_CHARACTERS = 12
"""Shortest password `bridge admin add-user` accepts, in characters."""

ADMIN_PASSWORD_CHECKS_AT_ONCE = 2
"""Console password checks one process runs at the same time (the others wait their turn):
with ADMIN_SCRYPT_N below, at most 64 MiB per web process go to checking passwords."""

ADMIN_SCRYPT_N, ADMIN_SCRYPT_R, ADMIN_SCRYPT_P = 2 ** 15, 8, 1
"""scrypt cost of console passwords: 128·N·r bytes = 32 MiB of memory and about 0.1 s of
one core per check (stored with each hash, so raising them leaves older hashes readable)."""

ALERT_CHECK_SECONDS = 30.0
"""How often the alert conditions are evaluated (by one process of all), in seconds."""

ALERT_WINDOW_MINUTES = 60
"""A condition's problem alert goes out at most once per this many minutes (a reminder when
it still holds after it), in minutes; a recovery goes out when the condition clears."""

ALERT_LIONDESK_FAILING_MINUTES = 10
"""How long every LionDesk call must have been failing (no success in between) before an alert, in minutes."""

ALERT_BACKLOG_MINUTES = 15
"""Age of the oldest delivery or job still waiting to be worked on before an alert, in minutes."""

ALERT_NO_WORKER_MINUTES = 5
"""How long no worker may be seen before an alert, in minutes."""

ALERT_REDIS_MEMORY_PERCENT = 80
"""Share of Redis's memory limit (maxmemory) in use above which an alert goes out, in percent."""

ALERT_WEBHOOK_TIMEOUT_SECONDS = (3.05, 5.0)
"""Connect and read timeouts of one alert webhook call, in seconds: a slow chat service
delays the next alert check, never a job."""

ALERT_SMTP_TIMEOUT_SECONDS = 10.0
"""Timeout of each step of sending one alert e-mail, in seconds."""

ALERT_LEADS_LISTED = 5
"""Most failed leads one alert names; the rest are counted."""

SEARCH_INDEX_BUCKET_SECONDS = 30 * 24 * 3600
"""Period of one lead-search index bucket, in seconds (30 days): a bucket expires a history
lifetime after its period ends, taking with it the leads not indexed again since."""

CONSOLE_PAGE_SIZE = 200
"""Most rows (failed jobs, rejected deliveries, search results) one console page shows."""

JOB_LATENCY_BUCKETS_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0)
"""Upper bounds of the job-duration histogram buckets in /metrics, in seconds
(the last one is JOB_TIMEOUT_SECONDS: no job runs longer)."""

INTAKE_BACKLOG_COUNT_LIMIT = 10_000
"""Most intake-stream entries read to count the backlog on a Redis older than 7 (which does not
count it itself); past it, /healthz and /metrics report this many (a floor)."""

INTAKE_STREAM_MAX_LENGTH = 1_000_000
"""Approximate number of relayed entries the intake stream keeps before trimming old ones."""

RELAY_GROUP = "relay"
"""Consumer group of the intake stream; every worker process reads it as one consumer."""

RELAY_BLOCK_MILLISECONDS = 1000
"""How long the relay blocks waiting for new intake entries, in milliseconds."""

RELAY_CLAIM_IDLE_MILLISECONDS = 30_000
"""An intake entry read but not relayed for this long (its worker died) is taken over
by another worker, in milliseconds."""

RELAY_BATCH = 100
"""Most intake entries the relay takes in one read."""

REFERENCE_MISS_REFRESH_SECONDS = 60
"""After fetching a LionDesk reference list, how long a lookup that misses trusts it
instead of fetching it again, in seconds."""

POLL_OVERLAP_SECONDS = 5
"""How far back before its cursor each LionDesk poll reads again, in seconds: LionDesk
stamps modified_at in whole seconds and a change committed late may carry an earlier
stamp, so windows overlap; contacts read twice cost a Redis comparison, no call."""

POLL_TIME_BUDGET_SECONDS = 15
"""How long one poll keeps reading changed contacts before it stops and leaves the rest
to the next poll (its cursor says where), in seconds; under JOB_TIMEOUT_SECONDS."""

POLL_LOCK_TIMEOUT_SECONDS = 60
"""Lifetime of the lock that keeps LionDesk polls from overlapping, in seconds; longer
than any poll runs, so it only expires when its holder died."""

POLL_LEAD_LOCK_WAIT_SECONDS = 5
"""How long the poll waits for a lead another job is working on, in seconds, before it
hands that contact to a job of its own and moves on."""

POLL_TRIGGER_CHECK_SECONDS = 1.0
"""How often each worker process checks whether a new poll slot began, in seconds
(never longer than a quarter of LIONDESK_POLL_SECONDS)."""

POLL_RESULT_TTL_SECONDS = 3600
"""How long a finished poll job (and what it read and wrote) stays inspectable in RQ, in seconds."""

LIONDESK_INLINE_RETRIES = 2
"""Times one LionDesk call is repeated within its job, after a 429 (any call) or a 5xx,
timeout or lost connection (reads only), before the job's retry ladder takes over."""

LIONDESK_INLINE_RETRY_BACKOFF_SECONDS = 0.25
"""First pause before repeating a LionDesk call within its job when LionDesk sent no
Retry-After, in seconds; it doubles for the next repeat (plus up to half again as jitter)."""

LIONDESK_INLINE_RETRY_MAX_WAIT_SECONDS = 2.0
"""Longest pause before repeating a LionDesk call within its job, in seconds; a longer
Retry-After hands the job to the retry ladder, which waits that long without holding a worker."""

PLATFORM_ENVIRONMENT_MARKERS = {
    "DYNO": "Heroku",
    "RENDER": "Render",
    "FLY_APP_NAME": "Fly.io",
    "RAILWAY_ENVIRONMENT": "Railway",
    "DOKKU_APP_TYPE": "Dokku",
    "K_SERVICE": "Cloud Run",
    "PLATFORM_APPLICATION_NAME": "Platform.sh",
}
"""Variables a hosting platform sets in every process it runs, and the platform's name:
when one is present the bridge is in production, where the embedded Redis (lost at
the next restart or deploy, and not shared between machines) would lose leads."""

HEROKU_REDIS_HOST_SUFFIXES = (".compute-1.amazonaws.com", ".compute.amazonaws.com")
"""Host name endings of Heroku Redis servers (EC2 public DNS names, such as
ec2-3-222-1-2.compute-1.amazonaws.com); Amazon's managed Redis (ElastiCache,
*.cache.amazonaws.com) presents a verifiable certificate and does not match."""

PREFLIGHT_REDIS_TIMEOUT_SECONDS = 5.0
"""How long `bridge check-config` waits for Redis to connect and answer PING, in seconds."""

WEBHOOK_JSON_MAX_DEPTH = 64
"""Deepest nesting of arrays and objects a webhook body may have, in levels (the
top-level object is level 1); deeper bodies get 400."""

WEBHOOK_JSON_MAX_INTEGER_DIGITS = 30
"""Most digits an integer in a webhook body may have, in decimal digits; longer ones get 400
(Python refuses to convert past 4,300 digits, and nothing Real Geeks sends comes near 30)."""

WEBHOOK_JSON_MAX_NUMBER_CHARACTERS = 100
"""Longest text of one non-integer number in a webhook body, in characters; longer ones get
400, as do numbers too large for a float (they would become infinity) and NaN/Infinity."""

WEBHOOK_JSON_MAX_VALUES = 200_000
"""Most JSON values (objects, arrays, strings, numbers, true/false/null; keys not counted)
one webhook body may hold, in values; more get 400."""

CONSOLE_REJECTED_PAGE_SIZE = 50
"""Rejected deliveries per console page (a count): each is read whole, body included."""

CONSOLE_ERROR_FIELDS = 50
"""Most fields of one delivery's validation errors a console page lists (a count); the rest are counted."""

CONSOLE_LINE_CHARACTERS = 1_000
"""Most characters of one story entry or error a console list shows; the rest is on the entry's own page."""

CONSOLE_PAYLOAD_PREVIEW_CHARACTERS = 20_000
"""Longest stored payload or error text a console list shows, in characters; the rest is
cut with a note saying how much, and the job page shows the whole payload."""


LIONDESK_CHANNEL_RECHECK_SECONDS = 3600
"""How long a LionDesk channel found gone (Tasks v2.1, v1) is skipped before the bridge
tries it again, in seconds: a retired channel costs one failed call an hour, not one per activity."""

LIONDESK_V1_ECHO_MAX_AGE_SECONDS = 300
"""/healthz repeats the v1 `Echo` when the last check of the v1 channel is older than this, in seconds."""

V1_ECHO_TIMEOUT_SECONDS = 3.0
"""Read timeout of the v1 `Echo` /healthz and check-config send, in seconds."""

LIONDESK_APP_CONFLICT_RECHECK_SECONDS = 3600
"""After LionDesk answered "the oauth_client_id does not belong to the querying user" (or a 401
right after a fresh refresh), the calls that need it are skipped for this long, in seconds,
without refreshing the token again (no refresh storm); then one call tries again."""

LIONDESK_KEEPALIVE_SECONDS = 3 * 24 * 3600
"""An idle LionDesk grant is refreshed when no token was issued for this long, in seconds
(LionDesk publishes no refresh-token lifetime; its access tokens last about 9 days)."""

LIONDESK_KEEPALIVE_CHECK_SECONDS = 3600
"""How often each worker looks whether the LionDesk grant has been idle for LIONDESK_KEEPALIVE_SECONDS, in seconds."""

LIONDESK_TASK_TITLE_CHARS = 120
"""Longest title the bridge puts at the head of a LionDesk task's text, in characters."""

LIONDESK_CONNECT_STATE_SECONDS = 600
"""How long the `state` of a console "Connect LionDesk" round trip stays valid, in seconds."""

DISPLAY_TIMEZONE = "UTC"
"""Time zone (IANA name) the console and the CLI show times in; BRIDGE_TIMEZONE overrides it.
UTC stays one hover (the console) or one `--json` (the CLI) away."""

LIONDESK_APP_URL = "https://www.liondesk.com/admin/index.html"
"""Where the LionDesk web app opens (its own login link), linked from a lead's page when
LIONDESK_CONTACT_URL gives no deep link to the contact: LionDesk documents no contact URL."""

CONSOLE_BANNER_SCAN_JOBS = 1000
"""Most waiting jobs the console's banner reads to say how long LionDesk has been failing (a count)."""


DUPLICATE_LOG_MAX_ENTRIES = 10_000
"""Most repeated deliveries the deliveries log keeps (a count; each kept at most DEDUPE_TTL_SECONDS)."""
