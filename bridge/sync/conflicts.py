"""Field-level last-writer-wins between the two directions (pure functions over plain data).

"Changed on both sides between syncs" means, for one field of one lead: LionDesk holds
a value that differs from the last synced snapshot (the poll sees it), AND a Real Geeks
change of the same field has been received but not yet applied (its webhook is stored,
its job has not finished). Only then does the bridge hold both changes, so only then
can it decide: the later change wins, by LionDesk's `modified_at` against Real Geeks'
`X-Lead-Router-Timestamp`; Real Geeks wins ties and unknown times
(`bridge.translate.snapshot.resolve_conflict`). LionDesk stamps whole seconds, so a
LionDesk change counts from the start of its second.

Both directions then follow the decision without talking to each other:
- LionDesk wins: the poll writes the value to Real Geeks and records WHEN Real Geeks
  accepted it (`pushed_ns:<field>` in the lead's link). A Real Geeks change older than
  that push no longer describes Real Geeks (our write came after it), so the forward
  sync skips that field (`overruled_by_push`). This also covers Real Geeks changes
  that arrive after the push: Real Geeks applied them before ours.
- Real Geeks wins: the poll leaves the field alone; the waiting forward job writes
  Real Geeks' value to LionDesk, and the next poll finds LionDesk equal to the snapshot.

Push times are the bridge's clock, Real Geeks' change times Real Geeks' clock: with both
kept by NTP, a Real Geeks change within milliseconds of a push may be ordered wrongly.

Not covered, on purpose: a forward job does not read LionDesk before it writes (that
would double the cost of every update), so a LionDesk edit made after a Real Geeks
change but before that change's job ran, and not yet seen by a poll, is overwritten.
Forward jobs run within milliseconds of the webhook, so the window is that small.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bridge.storage.mappings import LeadLink
from bridge.translate.snapshot import LIONDESK, Resolution, resolve_conflict

def push_marks(names: Iterable[str], accepted_ns: int) -> dict[str, int]:
    """The link's `pushed_ns` marks recording that Real Geeks accepted these fields at `accepted_ns`."""
    return dict.fromkeys(names, accepted_ns)


OVERRULED = ("the bridge wrote LionDesk's value of these fields to Real Geeks after this change was made, "
             "so Real Geeks holds that newer value: the change is not applied")
"""History detail of a Real Geeks change the forward sync skips for an overruling push."""


def overruled_by_push(link: LeadLink, changed: Mapping, change_ns: int) -> list[str]:
    """The changed fields the reverse sync wrote to Real Geeks after `change_ns`: Real Geeks holds our newer value."""
    return sorted(name for name in changed if link.pushed_ns.get(name, 0) > change_ns)


def latest_changes(changes: Iterable[tuple[int, Mapping]]) -> dict[str, tuple[object, int]]:
    """Fold (time, changed fields) pairs into each field's latest value and time."""
    latest: dict[str, tuple[object, int]] = {}
    for ns, changed in sorted(changes, key=lambda pair: pair[0]):
        for name, value in changed.items():
            latest[name] = (value, ns)
    return latest


@dataclass
class Decision:
    """What the poll does with LionDesk's changed fields: write them, record them as agreed, or yield."""

    push: dict = field(default_factory=dict)
    agreed: dict = field(default_factory=dict)
    resolutions: list[Resolution] = field(default_factory=list)


def decide(changed: Mapping, liondesk_ns: int | None, pending: Mapping[str, tuple[object, int]]) -> Decision:
    """Split LionDesk's changed fields against Real Geeks changes not yet applied (field → (value, ns)).

    A field only LionDesk changed is pushed. A field both changed is resolved by time:
    LionDesk's win is pushed, Real Geeks' win is left to the forward job, and the same
    value on both sides is simply agreed (nothing to write anywhere).
    """
    decision = Decision()
    for name, value in changed.items():
        if name not in pending:
            decision.push[name] = value
            continue
        rg_value, rg_ns = pending[name]
        if rg_value == value:
            decision.agreed[name] = value
            continue
        resolution = resolve_conflict(name, rg_value, rg_ns, value, liondesk_ns)
        decision.resolutions.append(resolution)
        if resolution.winner == LIONDESK:
            decision.push[name] = value
    return decision
