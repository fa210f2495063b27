"""LionDesk's documented field limits, and the trimming that keeps every body within them.

A value longer than its limit is cut, never refused: a lead must not fail because a
visitor typed a long street name. Each cut is reported as plain data
(`{"field", "original_length", "limit"}`) so the sync can write it into the lead's history.
Limits count characters (Python code points), as LionDesk's documentation states them.

Section numbers (§) refer to docs/vendors/liondesk-api.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

CONTACT = {
    "first_name": 255, "last_name": 255, "email": 255, "mobile_phone": 255,
    "home_phone": 45, "office_phone": 45, "fax": 45, "company": 45, "birthday": 45,
    "anniversary": 45, "spouse_name": 45, "spouse_email": 45,
}
"""Contact text fields → longest value in characters (docs/vendors/liondesk-api.md §4.1)."""

CONTACT_TAGS = 508
"""Longest `tags` string of a contact, in characters; tags are ONE string (§4.1, §4.6)."""

TAG_SEPARATOR = ","
"""How tags are joined in the contact's `tags` string (the list format is inferred, §4.6);
no space after the comma, so more tags fit."""

ADDRESS = {"street_address_1": 45, "street_address_2": 45, "zip": 45, "city": 200, "state": 200}
"""Contact address fields → longest value in characters (§4.2)."""

TASK = {"description": 2000, "notes": 2000}
"""v2 task text fields → longest value in characters (§4.14)."""

V1_ACTIVITY = {"contactid": 50, "siteid": 255, "sitedomain": 255, "description": 2000}
"""v1 NewActivity text fields → longest value in characters (§8.2; `contactid` as in NewSubmission)."""

V1_COMMENT = {"contactid": 50, "description": 2000}
"""v1 NewComment text fields → longest value in characters (§8.2)."""

CONTACT_SOURCE_NAME = 200
"""Longest contact source name, in characters (§4.4)."""

HOTNESS_NAME = 45
"""Longest hotness name, in characters (§4.5)."""


def trim_report(field: str, original_length: int, limit: int) -> dict:
    """Describe one cut value as plain data for the lead's history."""
    return {"field": field, "original_length": original_length, "limit": limit}


def fit(record: str, values: Mapping, limits: Mapping[str, int]) -> tuple[dict, list[dict]]:
    """Return `values` with each string cut to its limit, and a report naming `record.field` for every cut."""
    fitted, trims = dict(values), []
    for name, limit in limits.items():
        value = fitted.get(name)
        if isinstance(value, str) and len(value) > limit:
            fitted[name] = value[:limit]
            trims.append(trim_report(f"{record}.{name}", len(value), limit))
    return fitted, trims


def clean_tag(tag: str) -> str:
    """Return a tag as one LionDesk tag: the separator would split it in two, so it becomes a space."""
    return " ".join(str(tag).replace(TAG_SEPARATOR, " ").split())


def unique_tags(tags: Iterable[str]) -> list[str]:
    """Clean tags and drop empty ones and repeats (case-insensitive), keeping the first spelling and the order."""
    seen: dict[str, str] = {}
    for tag in map(clean_tag, tags):
        if tag and tag.casefold() not in seen:
            seen[tag.casefold()] = tag
    return list(seen.values())


def fit_tags(tags: Iterable[str], limit: int = CONTACT_TAGS) -> tuple[str, list[str], list[str]]:
    """Join tags into one string of at most `limit` characters; return (string, kept, dropped).

    A tag that does not fit is dropped whole and later, shorter tags still get their
    chance: part of a tag would be a different tag.
    """
    kept: list[str] = []
    dropped: list[str] = []
    length = 0
    for tag in unique_tags(tags):
        added = len(tag) + (len(TAG_SEPARATOR) if kept else 0)
        if length + added <= limit:
            kept.append(tag)
            length += added
        else:
            dropped.append(tag)
    return TAG_SEPARATOR.join(kept), kept, dropped


def split_tags(text: str | None) -> list[str]:
    """Split a contact's `tags` string into tags (the reverse of `fit_tags`)."""
    return unique_tags((text or "").split(TAG_SEPARATOR))
