"""Checks shared by the Real Geeks and LionDesk v1 simulations: the PROPERTY object and timestamps."""

from __future__ import annotations

import re

from bridge.sandbox.query import QueryError, parse_timestamp

INTEGER_FIELDS = frozenset({"beds", "full_baths", "half_baths", "listing_days_on_market", "year_built"})
NUMERIC_STRING_FIELDS = frozenset({"listing_price", "estimated_value", "last_sold_price", "rent_price"})
FLOAT_FIELDS = frozenset({"latitude", "longitude"})
STRING_LIST_FIELDS = frozenset({"images", "tags"})
STRING_FIELDS = frozenset({"mls", "url", "street_address", "city", "state", "zip", "type", "sqft",
                           "listing_status", "last_sold_date", "list_date"})
"""The PROPERTY object (LionDesk v1: docs/vendors/seeds/002; Real Geeks: docs/vendors/realgeeks-api.md §3.4); other keys pass unchecked."""

_NUMERIC_STRING = re.compile(r"^\d+(\.\d+)?$")


def is_timestamp(value) -> bool:
    """Whether `value` is an ISO 8601 date or date-time string."""
    if not isinstance(value, str):
        return False
    try:
        parse_timestamp(value)
    except QueryError:
        return False
    return True


def property_problem(prop) -> str | None:
    """What is wrong with a PROPERTY object, worded like Real Geeks' 422 messages, or None."""
    if not isinstance(prop, dict):
        return "Property must be an object."
    for name, value in prop.items():
        if value is None:
            continue
        if name in INTEGER_FIELDS and (isinstance(value, bool) or not isinstance(value, int)):
            return f"Property field '{name}' is not a valid integer."
        if name in NUMERIC_STRING_FIELDS and not (isinstance(value, str) and _NUMERIC_STRING.match(value)):
            return f"Property field '{name}' is not a valid numeric string."
        if name in FLOAT_FIELDS and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"Property field '{name}' is not a valid float."
        if name in STRING_LIST_FIELDS and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return f"Property field '{name}' is not a valid list of strings."
        if name in STRING_FIELDS and not isinstance(value, str):
            return f"Property field '{name}' is not a valid string."
    return None
