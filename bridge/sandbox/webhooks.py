"""Real Geeks' Outgoing side: sign a lead the way Real Geeks does and POST it to a destination.

Signing is written out here rather than borrowed from bridge.intake.signature on
purpose: the sandbox is the independent party the bridge's verification is tested against.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from bridge.defaults import SANDBOX_WEBHOOK_TIMEOUT_SECONDS

SIGNATURE_HEADER = "X-Lead-Router-Signature"
ACTION_HEADER = "X-Lead-Router-Action"
TIMESTAMP_HEADER = "X-Lead-Router-Timestamp"


@dataclass(frozen=True)
class Destination:
    """A Custom API destination as configured on a Real Geeks site."""

    url: str
    secret: str
    partner_id: str = ""


def rfc3339_nano(epoch_ns: int) -> str:
    """RFC 3339 UTC as Go's RFC3339Nano writes it: up to nine fractional digits, trailing zeros dropped (0-9 digits).

    Real Geeks' timestamps come with 0, 6 or 9 digits (docs/vendors/realgeeks-api.md §2.5, §7).
    """
    seconds, nanos = divmod(epoch_ns, 1_000_000_000)
    fraction = f"{nanos:09d}".rstrip("0")
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + \
        (f".{fraction}" if fraction else "") + "Z"


def timestamp_header(epoch_ns: int) -> str:
    """The X-Lead-Router-Timestamp of a delivery made at `epoch_ns`."""
    return rfc3339_nano(epoch_ns)


def body_bytes(payload: dict) -> bytes:
    """A delivery body as Real Geeks writes it: pretty-printed with `", "` separators, so each line that ends
    in a comma ends in a trailing space (the receiver's signed fixture, docs/vendors/realgeeks-api.md §1.3)."""
    return json.dumps(payload, indent=2, separators=(", ", ": ")).encode("utf-8")


def signed_request(payload: dict, secret: str, epoch_ns: int) -> tuple[bytes, dict]:
    """The body bytes and headers of one delivery: HMAC-SHA256 hex of exactly those bytes.

    The same payload gives the same bytes every time: a repeated update differs only in its timestamp header.
    """
    body = body_bytes(payload)
    headers = {
        "Content-Type": "application/json",
        ACTION_HEADER: payload["action"],
        SIGNATURE_HEADER: hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest(),
        TIMESTAMP_HEADER: timestamp_header(epoch_ns),
    }
    return body, headers


def public_view(delivery: dict) -> dict:
    """A delivery record without its raw body bytes and headers."""
    return {k: v for k, v in delivery.items() if not k.startswith("_")}


def http_post(url: str, body: bytes, headers: dict, timeout: float) -> int:
    """POST one delivery and return the HTTP status."""
    import requests

    return requests.post(url, data=body, headers=headers, timeout=timeout).status_code


class Deliverer:
    """Sends deliveries one at a time, in order, from a background thread, and remembers each outcome."""

    def __init__(self, send: Callable[[str, bytes, dict, float], int] = http_post,
                 timeout: float = SANDBOX_WEBHOOK_TIMEOUT_SECONDS):
        self.send = send
        self.timeout = timeout
        self._cond = threading.Condition()
        self._pending: list[dict] = []
        self._thread: threading.Thread | None = None
        self.destination: Destination | None = None
        self.deliveries: list[dict] = []

    def reset(self) -> None:
        """Forget the destination and every delivery (pending ones are dropped)."""
        with self._cond:
            self.destination = None
            self.deliveries = []
            self._pending.clear()
            self._cond.notify_all()

    def configure(self, destination: Destination | None) -> None:
        """Set (or with None, remove) the destination."""
        with self._cond:
            self.destination = destination

    def enqueue(self, payload: dict) -> dict | None:
        """Queue `payload` (which carries `action`) for the destination; None when there is none."""
        with self._cond:
            if self.destination is None:
                return None
            body, headers = signed_request(payload, self.destination.secret, time.time_ns())
            delivery = {"seq": len(self.deliveries) + 1, "action": payload["action"], "lead_id": payload.get("id"),
                        "site_uuid": payload.get("site_uuid"), "url": self.destination.url,
                        "status": "pending", "http_status": None, "error": None, "attempts": 0,
                        "payload": payload, "_body": body, "_headers": headers}
            self.deliveries.append(delivery)
            self._queue(delivery)
            return delivery

    def redeliver(self, seq: int) -> dict | None:
        """Send delivery `seq` again with the same bytes and headers (Real Geeks' at-least-once)."""
        with self._cond:
            if not 1 <= seq <= len(self.deliveries):
                return None
            delivery = self.deliveries[seq - 1]
            delivery["status"] = "pending"
            self._queue(delivery)
            return delivery

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until nothing is pending or being sent; False if `timeout` seconds passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or any(d["status"] == "sending" for d in self.deliveries):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def public(self) -> list[dict]:
        """Every delivery as plain data (without the raw bytes)."""
        with self._cond:
            return [public_view(d) for d in self.deliveries]

    def _queue(self, delivery: dict) -> None:
        """Hand a delivery to the sending thread, starting it on first use (caller holds the lock)."""
        self._pending.append(delivery)
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def _run(self) -> None:
        """Send pending deliveries forever, oldest first."""
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                delivery = self._pending.pop(0)
                delivery["status"] = "sending"
            try:
                status, error = self.send(delivery["url"], delivery["_body"], delivery["_headers"], self.timeout), None
            except Exception as exc:  # noqa: BLE001 - any failure to reach the bridge is an outcome to record
                status, error = None, f"{type(exc).__name__}: {exc}"
            with self._cond:
                delivery["attempts"] += 1
                delivery["http_status"], delivery["error"] = status, error
                delivery["status"] = "delivered" if status is not None and 200 <= status < 300 else "failed"
                self._cond.notify_all()
