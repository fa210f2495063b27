"""Text compared the way people mean it: case and spacing do not make two names, e-mails or labels differ."""

from __future__ import annotations


def folded(value) -> str:
    """Text as compared ignoring case and surrounding spaces ("" for None)."""
    return str(value or "").strip().casefold()


def folded_words(value) -> str:
    """Text as compared ignoring case and every run of spaces (inner ones too): names, place names."""
    return " ".join(str(value or "").casefold().split())
