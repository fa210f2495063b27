"""Feathers-style list queries (`?f[$in]=a&$sort[f]=-1&$limit=2`) as pure functions over plain dicts.

LionDesk v2 is a Feathers.js service over MySQL (inferred from its query syntax and
error bodies). Two consequences the sandbox reproduces on purpose:

- Text comparisons follow a case-insensitive MySQL collation (assumed: the usual
  `utf8mb4_general_ci`), so `?email=Jane@X.com` finds `jane@x.com`. Phone columns are
  compared as exact strings: no normalisation, so `808-555-1234` does not find
  `(808) 555-1234`, which is the pitfall the bridge must handle.
- SQL NULL semantics: a NULL column never satisfies `=`, `$ne`, `$in` or `$nin`.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Callable, Iterable

OPERATORS = frozenset({"$in", "$nin", "$ne", "$lt", "$lte", "$gt", "$gte", "$like"})
MULTI_VALUE_OPERATORS = frozenset({"$in", "$nin"})
RANGE_OPERATORS = frozenset({"$lt", "$lte", "$gt", "$gte"})
IGNORED_PARAMETERS = frozenset({"$load"})
"""Accepted and ignored: `$load` only embeds related records LionDesk-side."""

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
"""LionDesk publishes no maximum; Feathers' paginate.max clamps silently, and 100 is
what the reference tells the bridge to stay under."""

_KEY = re.compile(r"^(?P<field>[A-Za-z0-9_.]+)(?:\[(?P<op>\$[A-Za-z]+)\](?:\[\d*\])?)?$")
_SORT_KEY = re.compile(r"^\$sort\[(?P<field>[A-Za-z0-9_.]+)\]$")


class QueryError(ValueError):
    """A query string LionDesk would refuse with 400 BadRequest."""


@dataclass(frozen=True)
class Condition:
    """One filter: `field` `op` `values` (`values` has one item except for $in / $nin)."""

    field: str
    op: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Query:
    """A parsed list query: filters, sort keys (field, 1 | -1), limit and skip."""

    conditions: tuple[Condition, ...] = ()
    sort: tuple[tuple[str, int], ...] = ()
    limit: int = DEFAULT_LIMIT
    skip: int = 0


@dataclass(frozen=True)
class Collation:
    """How a resource compares its columns: which are dates and which are exact strings."""

    date_fields: frozenset[str] = frozenset({"created_at", "modified_at"})
    exact_fields: frozenset[str] = frozenset()


def parse_query(pairs: Iterable[tuple[str, str]], *, skip_params: Iterable[str] = (),
                refuse_single_in: bool = False) -> Query:
    """Parse query-string pairs (repeated keys kept, in order) into a Query; raise QueryError.

    `refuse_single_in`: a `field[$in]=x` given once is refused, as a Feathers server whose query
    parser reads one value as a string (not a list) would (a knob: LionDesk's behaviour is unknown).
    """
    skip_params = set(skip_params)
    grouped: dict[tuple[str, str], list[str]] = {}
    sort: list[tuple[str, int]] = []
    limit, skip = DEFAULT_LIMIT, 0
    for key, value in pairs:
        if key in skip_params or key in IGNORED_PARAMETERS:
            continue
        if key == "$limit":
            limit = min(_non_negative_int(key, value), MAX_LIMIT)
        elif key == "$skip":
            skip = _non_negative_int(key, value)
        elif sort_match := _SORT_KEY.match(key):
            sort.append((sort_match["field"], _sort_direction(key, value)))
        elif (match := _KEY.match(key)) is not None:
            op = match["op"] or "="
            if op != "=" and op not in OPERATORS:
                raise QueryError(f"Invalid query parameter {op}")
            grouped.setdefault((match["field"], op), []).append(value)
        else:
            raise QueryError(f"Invalid query parameter {key}")
    conditions = []
    for (field, op), values in grouped.items():
        if op in MULTI_VALUE_OPERATORS:
            if refuse_single_in and len(values) == 1:
                raise QueryError(f"Invalid query: {field}[{op}] must be an array")
            conditions.append(Condition(field, op, tuple(values)))
        else:
            # A repeated scalar key: every occurrence must hold (qs would make it a list,
            # and knex an IN; the last-wins reading is no less plausible, so keep it strict).
            conditions.extend(Condition(field, op, (value,)) for value in values)
    return Query(tuple(conditions), tuple(sort), limit, skip)


def _non_negative_int(key: str, value: str) -> int:
    """Parse $limit / $skip, refusing what Feathers would refuse."""
    try:
        number = int(value)
    except ValueError:
        raise QueryError(f"{key} must be an integer, got {value!r}") from None
    if number < 0:
        raise QueryError(f"{key} must not be negative")
    return number


def _sort_direction(key: str, value: str) -> int:
    """Parse a $sort direction: 1 ascending, -1 descending."""
    if value not in ("1", "-1"):
        raise QueryError(f"{key} must be 1 or -1, got {value!r}")
    return int(value)


@lru_cache(maxsize=65536)
def parse_timestamp(text: str) -> datetime:
    """Parse an ISO 8601 date or date-time (Z or offset; naive means UTC) into an aware datetime.
    Cached: stored timestamps repeat (whole seconds), and a poll compares thousands."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise QueryError(f"{text!r} is not an ISO 8601 date") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _like_pattern(pattern: str) -> re.Pattern:
    """Compile an SQL LIKE pattern (% any run, _ one character) into a regex."""
    parts = ("." if char == "_" else ".*" if char == "%" else re.escape(char) for char in pattern)
    return re.compile("".join(parts), re.DOTALL)


class _Operand:
    """One query-string value, prepared once in every form a stored value may need."""

    __slots__ = ("text", "folded", "moment", "number", "boolean")

    def __init__(self, text: str, is_date: bool):
        self.text, self.folded = text, text.casefold()
        self.moment = parse_timestamp(text) if is_date else None
        try:
            self.number = float(text)
        except ValueError:
            self.number = None
        self.boolean = text.strip().lower() in ("1", "true")


def _pair(stored, operand: _Operand, field: str, collation: Collation) -> tuple:
    """A stored value and a query value as two values Python compares the way MySQL would."""
    if operand.moment is not None:
        return parse_timestamp(str(stored)), operand.moment
    if isinstance(stored, bool):
        return stored, operand.boolean
    if isinstance(stored, (int, float)):
        if operand.number is None:
            raise QueryError(f"{field}: {operand.text!r} is not a number")
        return stored, operand.number
    if field in collation.exact_fields:
        return str(stored), operand.text
    return str(stored).casefold(), operand.folded


_COMPARISONS = {"=": operator.eq, "$ne": operator.ne, "$lt": operator.lt, "$lte": operator.le,
                "$gt": operator.gt, "$gte": operator.ge}


def predicate(condition: Condition, collation: Collation = Collation()) -> Callable[[dict], bool]:
    """A test of one record against `condition` (a missing or NULL column satisfies nothing)."""
    field, op = condition.field, condition.op
    if op == "$like":
        exact = field in collation.exact_fields
        regex = _like_pattern(condition.values[0] if exact else condition.values[0].casefold())
        return lambda record: record.get(field) is not None and regex.fullmatch(
            str(record[field]) if exact else str(record[field]).casefold()) is not None
    operands = [_Operand(value, field in collation.date_fields) for value in condition.values]
    if op in MULTI_VALUE_OPERATORS:
        def member(record: dict) -> bool:
            stored = record.get(field)
            if stored is None:
                return False
            hit = any(left == right for left, right in (_pair(stored, o, field, collation) for o in operands))
            return hit if op == "$in" else not hit
        return member
    compare, operand = _COMPARISONS[op], operands[0]
    return lambda record: record.get(field) is not None and compare(*_pair(record[field], operand, field, collation))


def _sort_key(field: str, collation: Collation):
    """Key function ordering records on `field` like MySQL: NULLs first, text case-insensitive."""
    def key(record: dict):
        value = record.get(field)
        if value is None:
            return (0, "")
        if field in collation.date_fields:
            return (1, parse_timestamp(str(value)))
        if isinstance(value, str) and field not in collation.exact_fields:
            return (1, value.casefold())
        return (1, value)
    return key


def check_fields(query: Query, known_fields: Iterable[str]) -> None:
    """Refuse filters and sorts on columns the resource does not have (MySQL: unknown column)."""
    known = set(known_fields)
    for field in [condition.field for condition in query.conditions] + [field for field, _ in query.sort]:
        if field not in known:
            raise QueryError(f"Unknown column '{field}' in query")


def select(records: Iterable[dict], query: Query, collation: Collation = Collation()) -> tuple[int, list[dict]]:
    """Filter, sort and page `records` (already in id order); return (total, page)."""
    tests = [predicate(condition, collation) for condition in query.conditions]
    found = [record for record in records if all(test(record) for test in tests)]
    # Python's sort is stable: apply keys last-to-first so the first key wins, and the
    # incoming id order breaks ties (what MySQL gives in practice with a primary key).
    for field, direction in reversed(query.sort):
        found.sort(key=_sort_key(field, collation), reverse=direction == -1)
    return len(found), found[query.skip:query.skip + query.limit]


def envelope(total: int, query: Query, data: list) -> dict:
    """The LionDesk list envelope {total, limit, skip, data}."""
    return {"total": total, "limit": query.limit, "skip": query.skip, "data": data}
