"""Realistic sample Real Geeks payloads, for `bridge webhook send`, the sandbox, tests and benchmarks."""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timezone

FIRST_NAMES = ("Jack", "Leilani", "Kai", "Maria", "Noah", "Ava", "Liam", "Mei", "Olivia", "Keoni")
LAST_NAMES = ("Johnson", "Kealoha", "Nakamura", "Garcia", "Smith", "Lee", "Brown", "Silva", "Wong", "Akana")


def now_iso() -> str:
    """The current UTC time as Real Geeks writes it (microseconds, Z)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sample_lead(*, lead_id: str | None = None, rng: random.Random | None = None, **overrides) -> dict:
    """Return a `created` payload for a new website lead with one email and one phone."""
    rng = rng or random.Random()
    lead_id = lead_id or uuid.UUID(int=rng.getrandbits(128), version=4).hex
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    payload = {
        "action": "created",
        "id": lead_id,
        "partner_id": "bridge-sample",
        "site_uuid": "5ead6dd1-2cb9-4f80-80fc-5716b05c90ba",
        "site_domain": "www.mysite.com",
        "site_login_url": f"https://www.mysite.com/member/quick_login/{lead_id}/",
        "source": "Website Property Search",
        "source_system": "Website",
        "first_name": first,
        "last_name": last,
        "email": f"{first.lower()}.{last.lower()}.{lead_id[:8]}@example.com",
        "phone": f"808-{rng.randint(200, 999)}-{rng.randint(1000, 9999)}",
        "role": "Buyer",
        "region": "Honolulu",
        "timeframe": "3-6 Months",
        "created": now_iso(),
        "activities": [
            {"type": "visited", "source": "Website Property Search",
             "description": "First visit (initial sign-up)", "created": now_iso()},
        ],
    }
    payload.update(overrides)
    return payload


def body_of(payload: dict) -> bytes:
    """Serialise a payload the way a webhook body is sent."""
    return json.dumps(payload, separators=(", ", ": ")).encode("utf-8")


def sample_lead_body(**overrides) -> bytes:
    """A fresh sample `created` delivery body."""
    return body_of(sample_lead(**overrides))
