"""What a node's threads share while casts run: progress, bandwidth caps, cancellation, counters.

Every sender and receiver thread of an actor updates these, so each is thread-safe. Must not
import Django.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from dataplane.contract import ProgressRow, TargetResult


class Progress:
    """Thread-safe table of what this node is doing for each (transfer, target)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock  # wall time, as the `started` and `finished` the receivers record
        self._lock = threading.Lock()
        self._rows: dict[tuple[int, int], ProgressRow] = {}

    def set(self, transfer: int, target: int, **fields: Any) -> None:
        with self._lock:
            row = self._rows.setdefault((transfer, target), ProgressRow())
            for key, value in fields.items():
                setattr(row, key, value)
            row.updated = self._clock()

    def add_bytes(self, transfer: int, target: int, n: int, *, received: int = 0) -> None:
        with self._lock:
            row = self._rows.setdefault((transfer, target), ProgressRow(status="receiving"))
            row.bytes_done += n
            row.bytes_received += received
            # The bridge derives the rate as bytes_done / (updated - started): a stale `updated`
            # (the time of the last status change) made it TB/s while a cast ran.
            row.updated = self._clock()

    def finish(self, transfer: int, target: int, outcome: TargetResult) -> None:
        """Record how a target's receive ended.

        A receive that failed or was cancelled ends without a count of its own; what arrived
        in this attempt is what its row counted, and the outcome reports that, not 0.
        """
        with self._lock:
            row = self._rows.get((transfer, target))
            if row is not None:
                outcome.bytes_received = max(outcome.bytes_received, row.bytes_received)
        self.set(
            transfer,
            target,
            finished=self._clock(),
            status=outcome.status,
            error=outcome.error,
            sha256=outcome.sha256,
            bytes_received=outcome.bytes_received,
        )

    def snapshot(self, transfer: int) -> dict[int, ProgressRow]:
        """This node's rows for `transfer`, by target id (copies: the table keeps changing)."""
        with self._lock:
            return {g: replace(row) for (t, g), row in self._rows.items() if t == transfer}

    def once_stopped(
        self, transfer: int, target: int, reading: Callable[[], bool], digest: str, timeout: float = 5.0
    ) -> ProgressRow:
        """The target's row once its receive has stopped (waiting up to `timeout`), for abort.

        An aborted receive ends at once or at its next chunk boundary; waiting for that makes
        the bytes answered include the chunk that was arriving. `digest`: the file was renamed.
        """
        deadline = time.monotonic() + timeout
        row = self.snapshot(transfer).get(target, ProgressRow())
        while not digest and (row.status in ("receiving", "verifying") or reading()) and time.monotonic() < deadline:
            time.sleep(0.05)
            row = self.snapshot(transfer).get(target, ProgressRow())
        if digest:
            row.status, row.sha256 = "completed", digest
        return row

    def forget(self, transfer: int) -> None:
        """Drop the rows of a finished cast, except receives still running.

        A receive behind a partition can outlive its cast's record (the worker gave up on it);
        its row must keep counting until it stops, so abort's answer has its bytes.
        """
        with self._lock:
            for key in [k for k, row in self._rows.items() if k[0] == transfer]:
                if self._rows[key].status not in ("receiving", "verifying"):
                    del self._rows[key]


class TokenBucket:
    """A shared byte budget refilled at `rate` bytes/s; callers sleep off any debt.

    Starting empty and allowing debt keeps the long-run rate at or just under the cap
    whatever the chunk size, which is what a per-node cap promises.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = float(rate)
        # Injectable so that a test can run the bucket on a fake clock and see what it sleeps.
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = 0.0
        self._stamp = clock()

    def consume(self, n: int) -> None:
        with self._lock:
            now = self._clock()
            # Unused budget does not pile up beyond a quarter second of traffic.
            self._tokens = min(self._tokens + (now - self._stamp) * self.rate, self.rate * 0.25)
            self._stamp = now
            self._tokens -= n
            debt = -self._tokens
        if debt > 0:
            self._sleep(debt / self.rate)


@dataclass
class Limits:
    """What a node's threads share: timeouts, bandwidth caps, cancelled casts."""

    io_timeout: float = 60.0
    egress: TokenBucket | None = None
    ingress: TokenBucket | None = None
    cancelled: set[int] = field(default_factory=set)
    moved: set[tuple[int, int]] = field(default_factory=set)  # (transfer, target) receives to end
    # (transfer, target) pairs the worker gave up on, and those whose file was renamed into
    # place (-> its SHA-256). One lock makes "abort" and "rename" exclusive: whichever comes
    # first wins, and the worker learns which from abort's answer.
    aborted: set[tuple[int, int]] = field(default_factory=set)
    committed: dict[tuple[int, int], str] = field(default_factory=dict)
    commit_lock: threading.Lock = field(default_factory=threading.Lock)
    # The connection each TCP receive is reading from, so that an abort can drop it at once:
    # behind a partition the stream may stall for a minute before its next chunk boundary.
    streams: dict[tuple[int, int], socket.socket] = field(default_factory=dict)
    caps_stamp: float = 0.0  # when the caps applied last were read (Caps.stamp)

    def set_caps(self, egress: int | None, ingress: int | None, *, stamp: float = 0.0) -> None:
        # Caps read before the ones applied last arrived late (calls to an actor run at once):
        # they must not undo a newer change.
        if stamp < self.caps_stamp:
            return
        self.caps_stamp = stamp
        # Replace a bucket only when its rate changes, so in-flight sends keep their budget.
        if (self.egress.rate if self.egress else 0) != (egress or 0):
            self.egress = TokenBucket(egress) if egress else None
        if (self.ingress.rate if self.ingress else 0) != (ingress or 0):
            self.ingress = TokenBucket(ingress) if ingress else None

    def check(self, transfer: int, target: int | None = None) -> None:
        if transfer in self.cancelled:
            raise ConnectionAbortedError("the cast was cancelled")
        if target is not None and (transfer, target) in self.aborted:
            raise ConnectionAbortedError("the worker gave up on this target: receiving stopped, the part is kept")

    def abort(self, transfer: int, target: int) -> str:
        """Stop receiving for (transfer, target) unless its file is already in place.

        Returns the SHA-256 of the file when it was renamed into place before this, else "".
        """
        with self.commit_lock:
            if (transfer, target) in self.committed:
                return self.committed[(transfer, target)]
            self.aborted.add((transfer, target))
            stream = self.streams.get((transfer, target))
        if stream is not None:
            try:
                stream.shutdown(socket.SHUT_RDWR)  # the blocked read returns; the chunk is dropped
            except OSError:
                pass
        return ""

    @contextmanager
    def committing(self, transfer: int, target: int, sha256: str) -> Iterator[None]:
        """Hold the rename of a verified file against an abort; raise if the worker gave up first."""
        with self.commit_lock:
            self.check(transfer, target)
            yield
            self.committed[(transfer, target)] = sha256
            while len(self.committed) > 10_000:  # a long-lived actor: keep the newest
                del self.committed[next(iter(self.committed))]

    def check_target(self, transfer: int, target: int) -> None:
        if (transfer, target) in self.moved:
            raise ConnectionAbortedError("moved to another feeder")


class Counters:
    """Bytes this node sent, per transfer (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: dict[int, int] = {}
        self.total = 0

    def add(self, transfer: int, n: int) -> None:
        with self._lock:
            self.sent[transfer] = self.sent.get(transfer, 0) + n
            self.total += n

    def of(self, transfer: int) -> int:
        with self._lock:
            return self.sent.get(transfer, 0)
