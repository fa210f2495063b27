"""The shared LionDesk request ceiling: slots reserved atomically in Redis, callers sleep for them."""

import pytest

from bridge.clients.ratelimit import RateLimiter
from bridge.exceptions import UpstreamRateLimited
from bridge.storage import keys


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


def limiter(conn, clock, rate=10.0, **options):
    """A limiter on the LionDesk key with a fake clock and a sleep that only records."""
    slept = []
    made = RateLimiter(conn, keys.liondesk_rate_limiter(), rate, service="liondesk", clock=clock,
                       sleep=slept.append, **options)
    made.slept = slept
    return made


def test_calls_at_one_instant_are_spread_one_interval_apart(redis_conn, clock):
    ceiling = limiter(redis_conn, clock, rate=10)
    assert [ceiling.reserve() for _ in range(5)] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_every_process_shares_the_same_ceiling(redis_conn, clock):
    worker_a, worker_b = limiter(redis_conn, clock, rate=4), limiter(redis_conn, clock, rate=4)
    waits = [worker_a.reserve(), worker_b.reserve(), worker_a.reserve(), worker_b.reserve()]
    assert waits == pytest.approx([0.0, 0.25, 0.5, 0.75])


def test_slots_free_up_as_time_passes(redis_conn, clock):
    ceiling = limiter(redis_conn, clock, rate=10)
    ceiling.reserve(), ceiling.reserve(), ceiling.reserve()  # booked up to +0.3 s
    clock.now += 0.15
    assert ceiling.reserve() == pytest.approx(0.15)  # the slot at +0.3 s, 0.15 s from now
    clock.now += 10
    assert ceiling.reserve() == 0.0  # idle time is not banked beyond the burst
    assert ceiling.reserve() == pytest.approx(0.1)


def test_a_burst_goes_back_to_back_then_calls_are_spaced(redis_conn, clock):
    ceiling = limiter(redis_conn, clock, rate=10, burst=3)
    assert [ceiling.reserve() for _ in range(5)] == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2])


def test_acquire_sleeps_for_the_reserved_slot(redis_conn, clock):
    ceiling = limiter(redis_conn, clock, rate=5)
    assert ceiling.acquire() == 0.0
    assert ceiling.acquire() == pytest.approx(0.2)
    assert ceiling.slept == pytest.approx([0.2])  # no sleep at all for a free slot


def test_a_queue_longer_than_max_wait_sends_the_job_back_without_booking(redis_conn, clock):
    ceiling = limiter(redis_conn, clock, rate=1, max_wait=2.5)
    assert [ceiling.reserve() for _ in range(3)] == [0.0, 1.0, 2.0]
    with pytest.raises(UpstreamRateLimited) as caught:
        ceiling.reserve()
    assert caught.value.retry_after == pytest.approx(3.0) and caught.value.service == "liondesk"
    clock.now += 1
    assert ceiling.reserve() == pytest.approx(2.0)  # the refused call booked nothing


def test_the_key_expires_once_the_ceiling_is_idle(redis_conn, clock):
    ceiling = limiter(redis_conn, clock, rate=10)
    ceiling.reserve()
    assert 0 < redis_conn.pttl(keys.liondesk_rate_limiter()) <= 1100


def test_without_a_clock_redis_server_time_is_used(redis_conn):
    ceiling = RateLimiter(redis_conn, keys.liondesk_rate_limiter(), 1.0, service="liondesk")
    assert ceiling.reserve() == 0.0
    assert 0.0 < ceiling.reserve() <= 1.0  # the second call waits for a slot one second after the first


def test_rate_must_be_positive(redis_conn):
    with pytest.raises(ValueError):
        RateLimiter(redis_conn, keys.liondesk_rate_limiter(), 0, service="liondesk")
