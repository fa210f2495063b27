"""A request-rate ceiling shared by every process through Redis: callers wait for a slot, they do not fail.

The algorithm is GCRA (a token bucket kept as one timestamp): Redis stores the
"theoretical arrival time" of the next request. Each caller reserves the next free
slot in one atomic script and sleeps until it comes, so N workers together never
exceed the rate, and the calls are spread out instead of bunched into bursts.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from bridge import defaults
from bridge.exceptions import UpstreamRateLimited

# Times are integer microseconds: Lua numbers are doubles and Redis turns a Lua number
# reply into an integer, so whole microseconds survive both exactly. string.format("%d")
# keeps all digits when storing (Lua's tostring would round to 14 significant digits).
_RESERVE = """
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local now
if ARGV[4] ~= '' then
  now = tonumber(ARGV[4])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
if wait > max_wait then return {0, wait} end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.floor((next_tat - now) / 1000) + 1000)
return {1, wait}
"""

MICROS = 1_000_000


class RateLimiter:
    """At most `rate` requests per second across every process sharing `key`; `burst` may go back to back."""

    def __init__(self, conn: redis.Redis, key: str, rate: float, *, service: str,
                 burst: int = defaults.RATE_LIMIT_BURST,
                 max_wait: float = defaults.RATE_LIMIT_MAX_WAIT_SECONDS,
                 clock: Callable[[], float] | None = None, sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.key = key
        self.service = service
        self.interval_us = max(1, round(MICROS / rate))
        self.tolerance_us = (max(1, burst) - 1) * self.interval_us
        self.max_wait_us = round(max_wait * MICROS)
        self.clock = clock  # None: Redis server time, the one clock every machine agrees on
        self.sleep = sleep
        self._script = conn.register_script(_RESERVE)

    def reserve(self) -> float:
        """Reserve the next free slot and return how many seconds to wait for it.

        A slot further away than `max_wait` is not reserved: UpstreamRateLimited tells the
        job to come back later rather than sit out most of its run time asleep.
        """
        now = "" if self.clock is None else str(round(self.clock() * MICROS))
        reserved, wait_us = self._script(keys=[self.key],
                                         args=[self.interval_us, self.tolerance_us, self.max_wait_us, now])
        wait = int(wait_us) / MICROS
        if not int(reserved):
            raise UpstreamRateLimited(f"{self.service}: local request ceiling busy for {wait:.1f} s",
                                      service=self.service, retry_after=wait)
        return wait

    def acquire(self) -> float:
        """Wait until this caller may send a request; return the seconds slept."""
        wait = self.reserve()
        if wait > 0:
            self.sleep(wait)
        return wait
