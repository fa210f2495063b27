"""HTTP clients of the services the bridge talks to: LionDesk v2 (OAuth), LionDesk v1, Real Geeks Incoming."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from bridge.clients.http import Observer
from bridge.clients.liondesk import LionDeskClient
from bridge.clients.liondesk_v1 import LionDeskV1Client
from bridge.clients.realgeeks import RealGeeksClient
from bridge.config import Settings


@dataclass
class Clients:
    """The clients one process uses; an optional channel is None when its credentials are not set."""

    liondesk: LionDeskClient
    liondesk_v1: LionDeskV1Client | None
    realgeeks: RealGeeksClient | None


def build_clients(settings: Settings, conn: redis.Redis, observer: Observer | None = None) -> Clients:
    """Build every client the settings enable, each with its own pooled session.

    LionDesk is always built: without credentials its calls raise LionDeskNotConfigured,
    which makes jobs wait for an operator instead of failing.
    """
    return Clients(
        liondesk=LionDeskClient(settings, conn, observer=observer),
        liondesk_v1=LionDeskV1Client(settings, observer=observer) if settings.liondesk_v1_enabled else None,
        realgeeks=RealGeeksClient(settings, conn, observer=observer) if settings.reverse_sync_enabled else None,
    )
