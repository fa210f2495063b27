"""What the bridge keeps in Redis, how much room it takes, and making room safely.

- `memory_state`: memory used against `maxmemory` (INFO only: hosted Redis such as Heroku's
  refuses CONFIG), with a warning level well before the limit.
- `usage`: bytes by record kind (MEMORY USAGE of every key of a small database, of a SCAN
  sample of a large one scaled up by the key counts), and what expires when.
- `trim`: drops what is expendable, most expendable first, and never anything the bridge
  needs to go on working: id maps, snapshots, effects, activity marks, tokens, events whose
  work is not done, intake entries not yet relayed, queued, retrying or failed jobs.
- `trim_routine`: the part of `trim` that only removes what nothing will ever read again
  (relayed intake entries, index entries of events gone); every worker runs it in its
  maintenance so that these never grow with the number of leads.
"""

from __future__ import annotations

import fnmatch
import json
import time
from dataclasses import asdict, dataclass, field

import redis

from bridge import defaults
from bridge.queue import finished_jobs, forget_finished_jobs, rq_key_prefix
from bridge.storage import events, keys
from bridge.storage.redis import text

OK, WARNING, FULL, UNLIMITED = "ok", "warning", "full", "unlimited"
"""Memory levels: under the warning threshold, over it, at `maxmemory` (writes refused), no `maxmemory` set."""


@dataclass
class MemoryState:
    """Redis memory in use against its limit."""

    used_bytes: int
    maxmemory_bytes: int
    """0 when Redis has no limit (it then grows until the machine runs out)."""
    policy: str
    warning_percent: int
    percent: float | None = None
    level: str = OK

    def to_json(self) -> dict:
        """The state as JSON-ready data."""
        return asdict(self)

    def headline(self) -> str:
        """One line for people: '12.3 MB of 25.0 MB (49 %)'."""
        used = megabytes(self.used_bytes)
        if not self.maxmemory_bytes:
            return f"{used} used, no maxmemory set"
        note = {WARNING: " — nearly full", FULL: " — full: writes are refused"}.get(self.level, "")
        return f"{used} of {megabytes(self.maxmemory_bytes)} ({self.percent:.0f} %){note}"


def memory_state(conn, warning_percent: int = defaults.ALERT_REDIS_MEMORY_PERCENT) -> MemoryState:
    """Read memory used and `maxmemory` from INFO memory, and the level they make."""
    info = conn.info("memory")
    used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
    state = MemoryState(used_bytes=used, maxmemory_bytes=limit, policy=str(info.get("maxmemory_policy", "?")),
                        warning_percent=warning_percent)
    if not limit:
        state.level = UNLIMITED
        return state
    state.percent = round(100.0 * used / limit, 1)
    state.level = FULL if refuses_writes(used, limit, state.policy) else WARNING if state.percent >= warning_percent else OK
    return state


def refuses_writes(used: int, limit: int, policy: str) -> bool:
    """Whether a Redis using `used` of `limit` bytes refuses writes: at maxmemory with nothing it may evict.

    "At maxmemory" leaves a margin (REDIS_FULL_FREE_FRACTION): Redis refuses a write that
    would cross the limit and frees its buffer, so used memory hovers just under it.
    """
    if not limit or policy != "noeviction":
        return False
    return limit - used < max(limit * defaults.REDIS_FULL_FREE_FRACTION, defaults.REDIS_FULL_FREE_MIN_BYTES)


def megabytes(count: float) -> str:
    """Bytes as megabytes (10^6) with one decimal."""
    return f"{count / 1e6:.1f} MB"


# -- record kinds -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One kind of record: the keys it is stored under and how long it lives."""

    name: str
    pattern: str
    lifetime: str
    expendable: bool = False
    """Whether `trim` may drop (some of) it."""


def record_kinds() -> list[Kind]:
    """Every kind of record, most specific pattern first (built from `keys` with * for the variable parts)."""
    life = keys.lifetimes
    rq = rq_key_prefix()
    return [
        Kind("story", keys.lead_history("*"), f"{_days(life.story)} after its last entry", expendable=True),
        Kind("story detail (calls, deliveries)", keys.lead_story_detail("*"),
             f"{_days(life.story_detail)} after its last entry", expendable=True),
        Kind("event (delivery body)", keys.event("*"),
             f"{_days(life.event)}; {_days(life.delivered_event)} once delivered", expendable=True),
        Kind("event index", keys.events_by_time(), "entries trimmed to their events' lifetime", expendable=True),
        Kind("rejected-event index", keys.rejected_events(), "entries trimmed to their events' lifetime",
             expendable=True),
        Kind("intake stream", keys.intake_stream(), "entries trimmed once relayed", expendable=True),
        Kind("delivery dedupe", keys.delivery_dedupe("*"), _days(defaults.DEDUPE_TTL_SECONDS)),
        Kind("lead link (id map)", keys.lead_mapping("*"), f"{_days(life.link)} after its last change"),
        Kind("contact → lead map", keys.contact_mapping("*"), f"{_days(life.link)} after its last change"),
        Kind("snapshot", keys.lead_snapshot("*"), f"{_days(life.link)} after its last change"),
        Kind("effects (previous release)", keys.lead_effects("*"), "expiring, no longer written"),
        Kind("activity marks", keys.lead_activities("*"), f"{_days(life.link)}, newest {defaults.ACTIVITY_MARKS_MAX}"),
        Kind("activity marks (previous release)", keys.activity_dedupe("*", "*"), "expiring, no longer written"),
        Kind("search index", keys.PREFIX + "index:*", "with the story"),
        Kind("job outcome stats", keys.job_outcomes("*", "*"), _days(defaults.JOB_STATS_TTL_SECONDS), expendable=True),
        Kind("job outcome stats", keys.job_outcomes("*"), _days(defaults.JOB_STATS_TTL_SECONDS), expendable=True),
        Kind("lead lock", keys.lead_lock("*"), f"{defaults.LEAD_LOCK_TIMEOUT_SECONDS} s"),
        Kind("pending forward work", keys.lead_pending_events("*"), _days(defaults.PENDING_EVENT_TTL_SECONDS)),
        Kind("worker heartbeats", keys.worker_beat("*"), "while the worker beats"),
        Kind("worker heartbeat index", keys.worker_beats(), "trimmed by age and count"),
        Kind("LionDesk tokens and state", keys.PREFIX + "liondesk:*", "kept; caches an hour"),
        Kind("Real Geeks users cache", keys.realgeeks_users("*"), _days(defaults.REALGEEKS_USERS_TTL_SECONDS)),
        Kind("metrics counters", keys.metric("*"), "kept (a few fixed keys)"),
        Kind("poll state", keys.PREFIX + "poll:*", "kept (a few fixed keys)"),
        Kind("deliveries log (repeats)", keys.duplicate_deliveries(), _days(defaults.DEDUPE_TTL_SECONDS)),
        Kind("console users and sessions", keys.PREFIX + "admin:*", "users kept; sessions expire"),
        Kind("alert states", keys.PREFIX + "alerts:*", "kept (one per condition)"),
        Kind("other bridge records", keys.PREFIX + "*", "see TTL"),
        Kind("RQ job results", f"{rq}results:*", "a day (finished) or with the job", expendable=True),
        Kind("RQ jobs", f"{rq}job:*", "a day once finished; a year once failed"),
        Kind("RQ other (queues, registries, workers)", f"{rq}*", "with the jobs"),
    ]


def fixed_keys() -> list[str]:
    """The keys (and key patterns) that carry no TTL on purpose: each one key for the whole bridge,
    not one per lead, and bounded in size.

    - the event indexes: entries trimmed to their events' lifetime (`trim_event_indexes`);
    - the intake stream: entries trimmed once relayed (`trim_relayed`), INTAKE_STREAM_MAX_LENGTH at most;
    - metrics counters: one field per label value (outcomes, services, statuses);
    - LionDesk tokens, authorisation state and channels, the contact-search verdict, the poll
      state, each alert condition's state: one small hash each;
    - the console's users (one field per support person) and its open-session index (trimmed by expiry);
    - the worker heartbeat index: trimmed by age and count;
    - RQ's queues and registries: one per queue, entries going with their jobs' lifetimes.
    Every other key of ours expires.
    """
    rq = rq_key_prefix()
    return [keys.events_by_time(), keys.rejected_events(), keys.intake_stream(), keys.metric("*"), keys.worker_beats(),
            keys.liondesk_tokens(), keys.liondesk_auth_state(), keys.poll_state(), keys.webhook_secret_dev(),
            keys.liondesk_channels(), keys.liondesk_app_conflict(), keys.liondesk_contact_search(), keys.alert_state("*"),
            keys.console_users(), keys.console_sessions(),
            f"{rq}queues", f"{rq}queue:*", f"{rq}workers", f"{rq}workers:*", f"{rq}finished:*", f"{rq}failed:*",
            f"{rq}scheduled:*", f"{rq}wip:*", f"{rq}deferred:*", f"{rq}canceled:*", f"{rq}clean_*",
            f"{rq}scheduler*", f"{rq}suspended"]


def _days(seconds: int) -> str:
    """A lifetime in days (or hours under a day)."""
    return f"{seconds // 86400} days" if seconds >= 86400 else f"{seconds // 3600} h"


def kind_of(key: str, kinds: list[Kind]) -> Kind | None:
    """The kind of one key (first matching pattern), None for keys that are not ours or RQ's."""
    for kind in kinds:
        if fnmatch.fnmatchcase(key, kind.pattern):
            return kind
    return None


# -- usage --------------------------------------------------------------------------------------------


@dataclass
class KindUsage:
    """What one kind of record takes."""

    kind: str
    lifetime: str
    keys: int = 0
    measured: int = 0
    measured_bytes: int = 0
    without_ttl: int = 0
    """Measured keys with no expiry."""
    ttl_min_seconds: int | None = None
    ttl_max_seconds: int | None = None
    expendable: bool = False

    @property
    def bytes(self) -> int:
        """Estimated bytes of every key of this kind (measured bytes scaled to the key count)."""
        return round(self.measured_bytes * self.keys / self.measured) if self.measured else 0


@dataclass
class UsageReport:
    """Bytes by record kind, with the memory state."""

    memory: MemoryState
    total_keys: int
    measured_keys: int
    kinds: list[KindUsage] = field(default_factory=list)
    others: int = 0
    """Keys of neither the bridge nor RQ (another application sharing the database)."""
    sampled: bool = False
    """Whether figures were scaled up from a sample (a database of more than `sample` keys)."""

    def to_json(self) -> dict:
        """The report as JSON-ready data."""
        return {"memory": self.memory.to_json(), "total_keys": self.total_keys, "measured_keys": self.measured_keys,
                "sampled": self.sampled, "other_keys": self.others,
                "kinds": [{**asdict(k), "bytes": k.bytes} for k in self.kinds]}


def usage(conn, sample: int = defaults.REDIS_USAGE_SAMPLE_KEYS,
          warning_percent: int = defaults.ALERT_REDIS_MEMORY_PERCENT) -> UsageReport:
    """Count every key by kind and measure them all, or every n-th of them past `sample` keys."""
    kinds = record_kinds()
    total = conn.dbsize()
    step = max(1, -(-total // max(sample, 1)))  # measure every `step`-th key scanned
    exact = step == 1
    by_kind: dict[str, KindUsage] = {}
    report = UsageReport(memory=memory_state(conn, warning_percent), total_keys=total, measured_keys=0,
                         sampled=not exact)
    batch: list[tuple[bytes, KindUsage]] = []
    for position, raw in enumerate(conn.scan_iter(count=1000)):
        kind = kind_of(text(raw), kinds)
        if kind is None:
            report.others += 1
            continue
        entry = by_kind.setdefault(kind.name, KindUsage(kind.name, kind.lifetime, expendable=kind.expendable))
        entry.keys += 1
        if position % step == 0:
            batch.append((raw, entry))
            if len(batch) >= 500:
                _measure(conn, batch, exact)
                report.measured_keys += len(batch)
                batch = []
    _measure(conn, batch, exact)
    report.measured_keys += len(batch)
    report.kinds = sorted(by_kind.values(), key=lambda k: -k.bytes)
    return report


def _measure(conn, batch: list, exact: bool) -> None:
    """MEMORY USAGE and TTL of a batch of keys in one round trip, added to their kinds."""
    if not batch:
        return
    with conn.pipeline(transaction=False) as pipe:
        for raw, _ in batch:
            # SAMPLES 0 reads every element: exact, and affordable while the database is small.
            pipe.memory_usage(raw, samples=0 if exact else None)
            pipe.ttl(raw)
        answers = pipe.execute()
    for (_, entry), size, ttl in zip(batch, answers[::2], answers[1::2]):
        if size is None:  # expired between SCAN and now
            continue
        entry.measured += 1
        entry.measured_bytes += int(size)
        if ttl == -1:
            entry.without_ttl += 1
        elif ttl >= 0:
            entry.ttl_min_seconds = ttl if entry.ttl_min_seconds is None else min(entry.ttl_min_seconds, ttl)
            entry.ttl_max_seconds = ttl if entry.ttl_max_seconds is None else max(entry.ttl_max_seconds, ttl)


# -- trim ----------------------------------------------------------------------------------------------


@dataclass
class TrimStep:
    """What one step of a trim dropped (or, in a dry run, would drop)."""

    what: str
    keys: int = 0
    entries: int = 0
    bytes: int = 0
    """Estimated bytes freed (MEMORY USAGE of what goes; a share of it for entries of a key that stays)."""


def trim(conn, *, dry_run: bool = False, story_days: int | None = None, now: float | None = None) -> list[TrimStep]:
    """Drop what is expendable, most expendable first; with `dry_run` count it and change nothing.

    In order: intake entries already relayed; index entries of events past their lifetime or
    gone; finished RQ jobs and their results; job outcome stats; story detail and stories
    whose newest entry is older than their retention (`story_days` to cut stories harder);
    delivered events. Never id maps, snapshots, effects, activity marks, tokens, undelivered
    events, intake entries not yet relayed, or jobs queued, retrying, running or failed.
    """
    now = time.time() if now is None else now
    story_seconds = story_days * 86400 if story_days is not None else keys.lifetimes.story
    return [
        trim_relayed(conn, dry_run=dry_run),
        trim_event_indexes(conn, dry_run=dry_run, now=now),
        _trim_finished_jobs(conn, dry_run=dry_run),
        _drop_keys(conn, "job outcome stats", [keys.job_outcomes("*"), keys.job_outcomes("*", "*")], dry_run),
        _trim_stories(conn, "story detail past its retention", keys.lead_story_detail("*"),
                      now - keys.lifetimes.story_detail, dry_run),
        _trim_stories(conn, "stories past their retention", keys.lead_history("*"), now - story_seconds, dry_run,
                      also=keys.lead_story_detail),
        _trim_delivered_events(conn, dry_run=dry_run),
    ]


def trim_routine(conn, now: float | None = None) -> list[TrimStep]:
    """The trim every worker runs in its maintenance: only what nothing reads again."""
    return [trim_relayed(conn), trim_event_indexes(conn, now=now)]


def relayed_boundary(conn) -> str | None:
    """The intake stream id before which every entry was relayed and acknowledged, or None (nothing was)."""
    stream = keys.intake_stream()
    try:
        groups = conn.xinfo_groups(stream)
    except redis.ResponseError:  # no stream yet
        return None
    if not groups:
        return None  # no relay ever ran: every entry still waits
    bounds = []
    for group in groups:
        name = group["name"]
        pending = conn.xpending(stream, name)
        if pending and pending.get("pending"):
            bounds.append(text(pending["min"]))  # the oldest entry read but not acknowledged stays
        else:
            millis, _, sequence = text(group["last-delivered-id"]).partition("-")
            bounds.append(f"{millis}-{int(sequence or 0) + 1}")  # everything up to the last one read
    return min(bounds, key=_stream_id)


def _stream_id(entry_id: str) -> tuple[int, int]:
    """A stream entry id as a comparable pair."""
    millis, _, sequence = entry_id.partition("-")
    return int(millis), int(sequence or 0)


def trim_relayed(conn, *, dry_run: bool = False) -> TrimStep:
    """Drop intake stream entries every relay has read and acknowledged (XTRIM MINID)."""
    step = TrimStep("relayed intake entries")
    boundary = relayed_boundary(conn)
    if boundary is None:
        return step
    stream = keys.intake_stream()
    length = conn.xlen(stream)
    if not length:
        return step
    step.entries = _count_before(conn, stream, boundary)
    step.bytes = _share(conn, stream, step.entries, length)
    if not dry_run and step.entries:
        step.entries = conn.xtrim(stream, minid=boundary, approximate=False)
    return step


def _count_before(conn, stream: str, boundary: str) -> int:
    """How many stream entries have ids before `boundary`, paging through them."""
    count, start = 0, "-"
    while True:
        page = conn.xrange(stream, min=start, max=f"({boundary}", count=10_000)
        count += len(page)
        if len(page) < 10_000:
            return count
        start = f"({text(page[-1][0])}"


def _share(conn, key: str, part: int, whole: int) -> int:
    """Estimated bytes of `part` of the `whole` entries of one key."""
    size = conn.memory_usage(key) or 0
    return round(size * part / whole) if whole else 0


def trim_event_indexes(conn, *, dry_run: bool = False, now: float | None = None) -> TrimStep:
    """Drop index entries of events past their lifetime, and of delivered events already expired."""
    now = time.time() if now is None else now
    step = TrimStep("event index entries of events gone")
    for index in (keys.events_by_time(), keys.rejected_events()):
        whole = conn.zcard(index)
        if not whole:
            continue
        cutoff = now - keys.lifetimes.event
        gone = conn.zcount(index, "-inf", cutoff)
        if not dry_run and gone:
            conn.zremrangebyscore(index, "-inf", cutoff)
        # Younger entries whose event went early (delivered events live days, not months).
        stale = []
        for start in range(0, whole, 1000):
            ids = conn.zrangebyscore(index, f"({cutoff}", now - keys.lifetimes.delivered_event, start=start, num=1000)
            if not ids:
                break
            with conn.pipeline(transaction=False) as pipe:
                for event_id in ids:
                    pipe.exists(keys.event(text(event_id)))
                stale += [event_id for event_id, exists in zip(ids, pipe.execute()) if not exists]
        step.entries += gone + len(stale)
        step.bytes += _share(conn, index, gone + len(stale), whole)
        if not dry_run and stale:
            for start in range(0, len(stale), 1000):
                conn.zrem(index, *stale[start:start + 1000])
    return step


def _scan(conn, pattern: str):
    """Every key matching `pattern`, as text."""
    return (text(raw) for raw in conn.scan_iter(match=pattern, count=1000))


def _sizes(conn, names: list[str]) -> int:
    """Sum of MEMORY USAGE of some keys (one round trip)."""
    if not names:
        return 0
    with conn.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.memory_usage(name)
        return sum(size or 0 for size in pipe.execute())


def _drop(conn, step: TrimStep, names: list[str], dry_run: bool) -> None:
    """Count, measure and (unless a dry run) delete whole keys, 500 at a time."""
    for start in range(0, len(names), 500):
        chunk = names[start:start + 500]
        step.keys += len(chunk)
        step.bytes += _sizes(conn, chunk)
        if not dry_run:
            conn.delete(*chunk)


def _drop_keys(conn, what: str, patterns: list[str], dry_run: bool) -> TrimStep:
    """Drop every key matching the patterns."""
    step = TrimStep(what)
    _drop(conn, step, sorted({name for pattern in patterns for name in _scan(conn, pattern)}), dry_run)
    return step


def _newest_at(raw) -> float | None:
    """The time of a stored story entry (either naming), None when unreadable."""
    try:
        record = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    at = record.get("t", record.get("at"))
    return at if isinstance(at, (int, float)) else None


def _trim_stories(conn, what: str, pattern: str, cutoff: float, dry_run: bool, also=None) -> TrimStep:
    """Drop the story lists whose newest entry is older than `cutoff` (and, with `also`, the lead's other list)."""
    step = TrimStep(what)
    names = list(_scan(conn, pattern))
    old = []
    for start in range(0, len(names), 500):
        chunk = names[start:start + 500]
        with conn.pipeline(transaction=False) as pipe:
            for name in chunk:
                pipe.lindex(name, -1)
            newest = pipe.execute()
        # An entry without a readable time is never taken for old: such a story is kept.
        old += [name for name, raw in zip(chunk, newest) if (_newest_at(raw) or float("inf")) < cutoff]
    if also is not None and old:
        companions = [also(_lead_of(name)) for name in old]
        with conn.pipeline(transaction=False) as pipe:
            for name in companions:
                pipe.exists(name)
            old += [name for name, exists in zip(companions, pipe.execute()) if exists]
    _drop(conn, step, old, dry_run)
    return step


def _lead_of(story_key: str) -> str:
    """The lead id in a story key."""
    before, after = keys.lead_history("\0").split("\0")
    return story_key[len(before):len(story_key) - len(after)]


def _trim_finished_jobs(conn, *, dry_run: bool) -> TrimStep:
    """Drop RQ's record of jobs that finished (their results included): the story keeps what they did."""
    step = TrimStep("finished jobs and their results")
    found = finished_jobs(conn)
    step.keys = len(found)
    names = [name for job_keys in found.values() for name in job_keys]
    for start in range(0, len(names), 500):
        step.bytes += _sizes(conn, names[start:start + 500])
    if not dry_run and found:
        forget_finished_jobs(conn, list(found))
    return step


def _trim_delivered_events(conn, *, dry_run: bool) -> TrimStep:
    """Drop events whose job succeeded (those marked `delivered_at`); undelivered events stay."""
    step = TrimStep("delivered events")
    names = list(_scan(conn, keys.event("*")))
    delivered = []
    for start in range(0, len(names), 500):
        chunk = names[start:start + 500]
        with conn.pipeline(transaction=False) as pipe:
            for name in chunk:
                pipe.hexists(name, events.DELIVERED_AT)
            delivered += [name for name, done in zip(chunk, pipe.execute()) if done]
    _drop(conn, step, delivered, dry_run)
    if not dry_run and delivered:
        ids = [name[len(keys.event("")):] for name in delivered]
        for start in range(0, len(ids), 1000):
            conn.zrem(keys.events_by_time(), *ids[start:start + 1000])
    return step

