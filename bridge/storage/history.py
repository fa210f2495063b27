"""Every lead has a story: an append-only list of what happened to it, in Redis.

Entries are small JSON objects with `at` (unix seconds) and `kind` (one of `kinds.py`); callers add the
facts support needs (event id, call made and its status, error, who replayed).
Tokens and secrets never go in here.

The story is kept in two lists with lifetimes of their own. What happened (contact
created, fields updated, attempt failed, replayed...) lives `keys.lifetimes.story` (a year
by default); the detail of how (each LionDesk call, each delivery received) lives
`keys.lifetimes.story_detail` (7 days): the detail is three quarters of a story's bytes and
only matters while someone investigates. `read` merges both, oldest first.

Entries are stored with short names for the three facts every entry has (`t`, `k`, `e` for
`at`, `kind`, `event_id`) and read back under the long ones; entries written by earlier
releases (long names) read the same. No entry is stored larger than HISTORY_ENTRY_MAX_BYTES:
longer facts are cut and the entry's `cut` fact says which, and how many bytes they had.
"""

from __future__ import annotations

import json
import time

import redis

from bridge import defaults
from bridge.jsonlimits import parse
from bridge.storage import keys
from bridge.storage.kinds import CALL, RECEIVED, UNREADABLE, WRITTEN

DETAIL_KINDS = frozenset({CALL, RECEIVED})
"""Entry kinds that go into the short-lived detail list: how a job went, not what it did. A delivery
that was not queued (rejected, ignored) keeps its `received` entry in the story: nothing else tells of it."""

SHORT_NAMES = {"at": "t", "kind": "k", "event_id": "e"}
"""Stored name of the facts every entry carries (a year of entries, each a few bytes shorter)."""

_LONG_NAMES = {short: long for long, short in SHORT_NAMES.items()}

CUT = "cut"
"""Fact of an entry that was stored shortened: {fact name: bytes of JSON it had}."""

_ELLIPSIS = "…"


def entry(kind: str, **facts) -> dict:
    """Build one history entry stamped with the current time; `kind` is one of `kinds.py` (ValueError otherwise)."""
    if kind not in WRITTEN:  # a kind nobody named would be stored and never recognised by its readers
        raise ValueError(f"not a history kind: {kind!r} (name it in bridge/storage/kinds.py)")
    # To the microsecond: the story and its detail are two lists merged by time when read, and
    # entries of one job come a millisecond or less apart.
    return {"at": round(time.time(), 6), "kind": kind, **{k: v for k, v in facts.items() if v is not None}}


def append(conn, lead_id: str, kind: str, **facts) -> dict:
    """Append an entry to a lead's story; `conn` may be a client or an open pipeline."""
    return append_entry(conn, lead_id, entry(kind, **facts))


def append_entry(conn, lead_id: str, record: dict) -> dict:
    """Append a ready-made entry (see `entry`) to a lead's story."""
    key, most, ttl = place(lead_id, record)
    # One round trip, not three: a job writes a dozen entries, and on a hosted Redis
    # each round trip costs about a millisecond of the job's time.
    pipe = conn if isinstance(conn, redis.client.Pipeline) else conn.pipeline(transaction=False)
    pipe.rpush(key, encode(record))
    pipe.ltrim(key, -most, -1)
    pipe.expire(key, ttl)
    if pipe is not conn:
        pipe.execute()
    return record


def place(lead_id: str, record: dict) -> tuple[str, int, int]:
    """Where an entry goes: (list key, most entries it keeps, its lifetime in seconds): the detail or the story."""
    kind = record.get("kind")
    detail = isinstance(kind, str) and kind in DETAIL_KINDS and not (
        kind == RECEIVED and record.get("status") not in (None, "queued"))
    if detail:
        return keys.lead_story_detail(lead_id), defaults.HISTORY_DETAIL_MAX_ENTRIES, keys.lifetimes.story_detail
    return keys.lead_history(lead_id), defaults.HISTORY_MAX_ENTRIES, keys.lifetimes.story


def encode(record: dict, max_bytes: int = defaults.HISTORY_ENTRY_MAX_BYTES) -> str:
    """One entry as stored: compact JSON under the short names, at most `max_bytes` bytes."""
    stored = {SHORT_NAMES.get(name, name): value for name, value in record.items()}
    text = _dumps(stored)
    if len(text.encode("utf-8")) <= max_bytes:
        return text
    return _dumps(_capped(stored, max_bytes))


def _capped(stored: dict, max_bytes: int) -> dict:
    """An over-long entry with its largest facts shortened to fit, and a `cut` fact naming them."""
    kept = {name: stored[name] for name in ("t", "k", "e") if name in stored}
    facts = {name: value for name, value in stored.items() if name not in kept}
    sizes = {name: _size(value) for name, value in facts.items()}
    cut = {name: size for name, size in sizes.items()}
    # Room for the fixed facts, the `cut` note and the JSON punctuation around each fact.
    budget = max_bytes - _size(kept) - _size({CUT: cut}) - sum(len(name) + 6 for name in facts)
    shortened = dict.fromkeys(facts)
    for count, name in enumerate(sorted(facts, key=sizes.get)):  # smallest first: each gets a fair share
        share = max(budget // (len(facts) - count), 0)
        shortened[name] = facts[name] if sizes[name] <= share else shrink_json(facts[name], share)
        budget -= _size(shortened[name])
    result = {**kept, **shortened, CUT: {name: sizes[name] for name in facts if shortened[name] is not facts[name]}}
    while len(_dumps(result).encode("utf-8")) > max_bytes:  # a share misjudged by multi-byte text: cut harder
        name = max(facts, key=lambda n: _size(result[n]))
        result[name] = shrink_json(result[name], _size(result[name]) // 2)
        result[CUT][name] = sizes[name]
    return result


def shrink_json(value, max_bytes: int):
    """`value` shortened so that its JSON takes about `max_bytes` bytes at most (pure).

    Text is cut and ends in "…"; a list or an object keeps its first items that fit and
    ends with a note of how many were left out; numbers, booleans and null stay as they are.
    Used for story entries and the validation errors kept with a rejected event.
    """
    if isinstance(value, str):
        if _size(value) <= max_bytes:
            return value
        text = value[:max_bytes]  # every character takes at least one byte of JSON
        while text and _size(text + _ELLIPSIS) > max_bytes:
            text = text[:min(len(text) - 1, len(text) * max_bytes // _size(text + _ELLIPSIS))]
        return text + _ELLIPSIS
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, (list, tuple)):
        items = list(enumerate(value))
    else:
        return value
    if _size(value) <= max_bytes:
        return value
    kept, used = [], 2
    for position, (name, item) in enumerate(items):
        note_room = len(f"{len(items) - position} more left out") + 12
        room = max_bytes - used - note_room - (len(str(name)) + 4 if isinstance(value, dict) else 1)
        if room < 8:
            break
        size = _size(item) + (len(str(name)) + 4 if isinstance(value, dict) else 1)
        if used + size + note_room > max_bytes:
            if kept:  # later items are left out whole: a row of half-items says less than the note
                break
            item = shrink_json(item, room)  # the first one is shown, shortened
            size = _size(item) + (len(str(name)) + 4 if isinstance(value, dict) else 1)
        kept.append((name, item))
        used += size
    left_out = len(items) - len(kept)
    note = f"{left_out} more left out" if left_out else None
    if isinstance(value, dict):
        result = {str(name): item for name, item in kept}
        if note:
            result[_ELLIPSIS] = note
        return result
    return [item for _, item in kept] + ([_ELLIPSIS + " " + note] if note else [])


def _dumps(value) -> str:
    """Compact JSON, anything unknown as its text."""
    return json.dumps(value, default=str, separators=(",", ":"), ensure_ascii=False)


def _size(value) -> int:
    """Bytes of `value`'s compact JSON."""
    return len(_dumps(value).encode("utf-8"))


def read(conn, lead_id: str) -> list[dict]:
    """Return a lead's story, oldest entry first: the story and its detail merged by time.

    Each entry is parsed within the intake's JSON limits: one entry nested past them or
    holding a huge integer (written by an older version, or by hand) would otherwise stop
    every reader of the story (the console page, the CLI, the poll) with an error. Such an
    entry, or one that is not a JSON object, reads as an `unreadable` placeholder saying why.
    """
    with conn.pipeline(transaction=False) as pipe:
        pipe.lrange(keys.lead_history(lead_id), 0, -1)
        pipe.lrange(keys.lead_story_detail(lead_id), 0, -1)
        story, detail = pipe.execute()
    entries = [_entry_of(raw) for raw in story]
    if detail:
        # Both lists are in time order, and a stable sort keeps each list's order. Entries of
        # the same instant (written to the millisecond by an earlier release) put the detail
        # first: a call comes before what it brought about.
        merged = [(_time_of(entry), 1, entry) for entry in entries]
        merged += [(_time_of(entry), 0, entry) for entry in map(_entry_of, detail)]
        entries = [entry for *_, entry in sorted(merged, key=lambda item: item[:2])]
    return entries


def _time_of(record: dict) -> float:
    """An entry's time for ordering; a placeholder without one sorts first."""
    at = record.get("at")
    return at if isinstance(at, (int, float)) and not isinstance(at, bool) else 0.0


def _entry_of(raw: bytes) -> dict:
    """One stored entry as a dict under the long names, or a placeholder naming the problem and the entry's size."""
    parsed = parse(raw)
    if parsed.problem is None and isinstance(parsed.value, dict):
        value = parsed.value
        if any(short in value for short in _LONG_NAMES):
            value = {(_LONG_NAMES[name] if name in _LONG_NAMES and _LONG_NAMES[name] not in value else name): item
                     for name, item in value.items()}
        return value
    return {"at": None, "kind": UNREADABLE, "problem": parsed.problem or "not a JSON object", "bytes": len(raw)}
