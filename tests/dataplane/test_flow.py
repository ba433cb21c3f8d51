"""What a node's threads share: bandwidth buckets, caps, cancellation, progress and counters."""

from __future__ import annotations

import threading

import pytest

from dataplane.flow import Counters, Limits, Progress, TokenBucket
from tests.dataplane.fakes import FakeClock

pytestmark = pytest.mark.unit


def bucket(rate: float, clock: FakeClock) -> TokenBucket:
    return TokenBucket(rate, clock=clock, sleep=clock.sleep)


def test_a_bucket_starts_empty_and_sleeps_off_each_debt_exactly() -> None:
    clock = FakeClock()
    b = bucket(1000, clock)
    b.consume(500)
    assert clock.slept == [0.5]
    b.consume(250)  # the half second slept refilled exactly what the first send took
    assert clock.slept == [0.5, 0.25]


def test_a_bucket_holds_the_long_run_rate_whatever_the_sizes() -> None:
    clock = FakeClock()
    b = bucket(1000, clock)
    start = clock.now
    for size in [300, 7, 1200, 493, 2000]:
        b.consume(size)
    assert clock.now - start == pytest.approx(4.0)  # 4000 bytes at 1000 bytes/s


def test_unused_budget_is_kept_for_a_quarter_second_only() -> None:
    clock = FakeClock()
    b = bucket(1000, clock)
    clock.advance(10)  # idle: a burst may use at most 250 bytes of it
    b.consume(250)
    assert clock.slept == []
    b.consume(100)
    assert clock.slept == [pytest.approx(0.1)]


def test_time_spent_between_sends_pays_for_them() -> None:
    clock = FakeClock()
    b = bucket(1000, clock)
    b.consume(100)
    clock.advance(0.2)  # reading the next chunk took longer than the budget it needs
    b.consume(150)
    assert clock.slept == [pytest.approx(0.1)]
    b.consume(100)
    assert clock.slept == [pytest.approx(0.1), pytest.approx(0.05)]


def test_set_caps_keeps_a_bucket_whose_rate_did_not_change() -> None:
    limits = Limits()
    limits.set_caps(1000, None)
    assert limits.egress is not None and limits.egress.rate == 1000
    assert limits.ingress is None
    egress = limits.egress
    limits.set_caps(1000, 2000)
    assert limits.egress is egress  # in-flight sends keep their budget
    assert limits.ingress is not None and limits.ingress.rate == 2000
    limits.set_caps(500, 2000)
    assert limits.egress is not egress and limits.egress.rate == 500
    limits.set_caps(None, 0)
    assert limits.egress is None and limits.ingress is None


def test_caps_read_before_the_ones_applied_do_not_undo_them() -> None:
    # A heartbeat sent before an operator's change can reach the actor after it.
    limits = Limits()
    limits.set_caps(None, 2000, stamp=20.0)
    limits.set_caps(None, None, stamp=10.0)
    assert limits.ingress is not None and limits.ingress.rate == 2000
    limits.set_caps(None, None, stamp=30.0)
    assert limits.ingress is None


def test_a_cancelled_cast_stops_at_the_next_check_and_others_go_on() -> None:
    limits = Limits()
    limits.check(1)
    limits.cancelled.add(1)
    with pytest.raises(ConnectionAbortedError, match="cancelled"):
        limits.check(1)
    limits.check(2)


def test_progress_rows_are_kept_per_transfer_and_target() -> None:
    progress = Progress()
    progress.set(1, 10, status="receiving", size=100, started=5.0)
    progress.add_bytes(1, 10, 30, received=20)
    progress.add_bytes(1, 10, 10, received=10)
    progress.add_bytes(1, 11, 7)  # a row made by its first bytes is receiving
    progress.set(2, 10, status="verifying")
    rows = progress.snapshot(1)
    assert sorted(rows) == [10, 11]
    assert (rows[10].status, rows[10].size, rows[10].bytes_done, rows[10].bytes_received) == ("receiving", 100, 40, 30)
    assert (rows[11].status, rows[11].bytes_done, rows[11].bytes_received) == ("receiving", 7, 0)
    rows[10].bytes_done = 0  # a snapshot is a copy
    assert progress.snapshot(1)[10].bytes_done == 40
    progress.set(1, 10, status="completed")
    progress.set(1, 11, status="failed")
    progress.forget(1)  # receives still running are kept (test_abort.py)
    assert progress.snapshot(1) == {}
    assert progress.snapshot(2)[10].status == "verifying"


def test_counters_add_up_per_transfer_across_threads() -> None:
    counters = Counters()

    def send() -> None:
        for _ in range(1000):
            counters.add(1, 3)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counters.add(2, 5)
    assert (counters.of(1), counters.of(2), counters.of(3), counters.total) == (12000, 5, 0, 12005)


def test_a_rate_read_off_a_progress_row_is_the_real_rate() -> None:
    # The bridge shows bytes_done / (updated - started): bytes must move `updated` on.
    clock = FakeClock()
    progress = Progress(clock=clock)
    progress.set(1, 10, status="receiving", started=clock(), size=10 * 2**20)
    for _ in range(10):
        clock.advance(0.1)
        progress.add_bytes(1, 10, 2**20, received=2**20)
    row = progress.snapshot(1)[10]
    assert row.started is not None
    assert row.updated == clock.now
    assert row.bytes_done / (row.updated - row.started) == pytest.approx(10 * 2**20)  # 10 MiB in one second
