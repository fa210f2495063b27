"""The call log: every API request the sandbox answered, cheap enough for benchmarks."""

from __future__ import annotations

import threading
from collections import Counter, deque
from datetime import datetime, timezone

from bridge.defaults import SANDBOX_CALL_LOG_SIZE

SECRET_KEYS = frozenset({"client_secret", "refresh_token", "access_token", "code", "password"})
"""Body keys whose values are never kept in the log, even in the sandbox."""


def redact(body):
    """A copy of a JSON body with credential values replaced by "***"."""
    if isinstance(body, dict):
        return {key: "***" if key in SECRET_KEYS else redact(value) for key, value in body.items()}
    if isinstance(body, list):
        return [redact(item) for item in body]
    return body


class CallLog:
    """A bounded (so logging stays O(1)), thread-safe list of calls whose sequence
    numbers survive resets."""

    def __init__(self, size: int = SANDBOX_CALL_LOG_SIZE):
        self._calls: deque[dict] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._seq = 0

    def record(self, *, service: str, method: str, path: str, template: str, query: str,
               status: int, duration_ms: float, body=None, fault: str | None = None) -> int:
        """Append one call and return its sequence number."""
        with self._lock:
            self._seq += 1
            self._calls.append({
                "seq": self._seq, "service": service, "method": method, "path": path,
                "template": template, "query": query, "status": status,
                "time": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                "duration_ms": round(duration_ms, 3), "body": redact(body), "fault": fault,
            })
            return self._seq

    @property
    def last_seq(self) -> int:
        """Sequence number of the newest call (0 when none was ever made)."""
        return self._seq

    def since(self, seq: int = 0, service: str | None = None) -> list[dict]:
        """Calls newer than `seq`, oldest first, optionally of one service."""
        with self._lock:
            newer = []
            for call in reversed(self._calls):
                if call["seq"] <= seq:
                    break
                newer.append(call)
        newer.reverse()
        return [call for call in newer if service is None or call["service"] == service]

    def clear(self) -> None:
        """Forget every call; sequence numbers keep growing so `since` stays meaningful."""
        with self._lock:
            self._calls.clear()


def count_by_template(calls: list[dict]) -> list[dict]:
    """How many calls each (service, method, path template) received, most first."""
    counts = Counter((call["service"], call["method"], call["template"]) for call in calls)
    return [{"service": service, "method": method, "path": template, "count": count}
            for (service, method, template), count in counts.most_common()]
