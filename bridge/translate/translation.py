"""The result of translating something for LionDesk: the body to send and what had to give."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Translation:
    """An outgoing body plus everything the sync should know about how it was made.

    `hotness` and `agent_email` carry names the body could not hold as ids (LionDesk
    wants `hotness_id` and `assigned_user_id`): None means "leave alone", "" means "clear".
    They are already resolved into the body when the caller passed the id maps.
    """

    body: dict
    address: dict | None = None
    trims: list[dict] = field(default_factory=list)
    dropped_tags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hotness: str | None = None
    agent_email: str | None = None

    def facts(self) -> dict:
        """What had to give (trims, dropped tags, notes), for `history.append(..., **facts)`; empty when nothing did."""
        facts = {"trims": self.trims, "dropped_tags": self.dropped_tags, "notes": self.notes}
        return {name: value for name, value in facts.items() if value}
