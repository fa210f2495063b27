"""Parse a webhook body once, within limits on nesting, number size and value count (pure, no I/O).

A signed body can still be hostile or broken: nested deeply enough to exhaust the
stack of whoever parses it next, an integer Python refuses to convert, a float that
overflows to infinity, or a million tiny values. `parse` refuses those with a short
reason, so the intake answers 400 and nothing later (relay, jobs, console) meets them.

Numbers are checked by json's own hooks as they are parsed; depth and value count are
bounded first by counting bytes in C, and walked in Python only when that bound is
over a limit, so an ordinary lead body pays for no walk at all.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass

from bridge import defaults


@dataclass(frozen=True)
class Limits:
    """How large a JSON body may be in each dimension `parse` checks."""

    max_depth: int = defaults.WEBHOOK_JSON_MAX_DEPTH
    max_integer_digits: int = defaults.WEBHOOK_JSON_MAX_INTEGER_DIGITS
    max_number_characters: int = defaults.WEBHOOK_JSON_MAX_NUMBER_CHARACTERS
    max_values: int = defaults.WEBHOOK_JSON_MAX_VALUES


WEBHOOK_LIMITS = Limits()
"""The limits every webhook body is held to."""


@dataclass(frozen=True)
class Parsed:
    """A parsed body, or why it was refused (`problem`, short enough to answer with)."""

    value: object = None
    problem: str | None = None


class _Refused(ValueError):
    """Raised from json's hooks to stop parsing; never leaves this module."""


def parse(body: bytes | str, limits: Limits = WEBHOOK_LIMITS) -> Parsed:
    """Parse `body` as JSON within `limits`; return the value, or the problem that refused it."""
    if isinstance(body, str):
        body = body.encode("utf-8", errors="surrogatepass")
    try:
        # What json.loads does with bytes, minus building a new decoder for every call.
        value = _decoder(limits).decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except _Refused as exc:
        return Parsed(problem=str(exc))
    except RecursionError:
        return Parsed(problem=f"nested deeper than {limits.max_depth} levels")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Parsed(problem=f"not valid JSON: {exc}")
    problem = shape_problem(value, limits, _bounds(body))
    return Parsed(problem=problem) if problem else Parsed(value=value)


@functools.lru_cache(maxsize=8)
def _decoder(limits: Limits) -> json.JSONDecoder:
    """A JSON decoder whose number hooks refuse numbers past `limits`."""
    def integer(text: str) -> int:
        if len(text) - text.startswith("-") > limits.max_integer_digits:
            raise _Refused(f"an integer has more than {limits.max_integer_digits} digits")
        return int(text)

    def number(text: str) -> float:
        if len(text) > limits.max_number_characters:
            raise _Refused(f"a number is longer than {limits.max_number_characters} characters")
        value = float(text)
        if not math.isfinite(value):
            raise _Refused("a number is too large")
        return value

    def constant(text: str):
        raise _Refused(f"{text} is not a JSON number")

    return json.JSONDecoder(parse_int=integer, parse_float=number, parse_constant=constant)


def _bounds(body: bytes) -> tuple[int, int]:
    """Upper bounds on a JSON text's depth and value count, from counting bytes (C speed).

    Depth cannot exceed the number of opening brackets; every value but the first
    is either preceded by a comma or is the first element of a container. Brackets
    and commas inside strings only make the bounds looser.
    """
    opens = body.count(b"[") + body.count(b"{")
    return opens, body.count(b",") + opens + 1


def shape_problem(value, limits: Limits = WEBHOOK_LIMITS, bounds: tuple[int, int] | None = None) -> str | None:
    """Say how a parsed JSON value is nested too deeply or holds too many values, or None when it does not.

    `bounds` (depth, values), when known to be within the limits, skip the walk; the
    walk itself is iterative and stops at the first limit passed.
    """
    if bounds is not None and bounds[0] <= limits.max_depth and bounds[1] <= limits.max_values:
        return None
    count = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        count += 1
        if count > limits.max_values:
            return f"more than {limits.max_values} values"
        if isinstance(item, (dict, list)):
            if depth > limits.max_depth:
                return f"nested deeper than {limits.max_depth} levels"
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return None
