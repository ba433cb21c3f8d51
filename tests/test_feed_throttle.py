"""What the throttle in transfers/events.py lets through, per group: a transfer's page hears
every state, the dashboards' `status` group at most one event per cast per interval,
except the cast's end, which goes out at once."""

from __future__ import annotations

import time
from typing import Any

import pytest

from transfers import events
from transfers.events import STATUS_GROUP, TransferEvent, transfer_group
from transfers.feed import Feed


def _event(status: str, target: str = "pending", done: int = 0) -> TransferEvent:
    return {
        "type": "transfer.update",
        "transfer": 7,
        "status": status,
        "size": 100,
        "sha256": "",
        "tree": {},
        "attempts": 1,
        "source_bytes_sent": 0,
        "relay_bytes_sent": 0,
        "error": "",
        "files": None,
        "targets": [
            {
                "id": 1,
                "node": "node_2",
                "status": target,
                "bytes_done": done,
                "bytes_received": done,
                "rate": None,
                "error": "",
                "parent": None,
                "attempts": 1,
                "samples": [],
                "files_done": 0,
            }
        ],
    }


@pytest.fixture
def released(monkeypatch) -> list[tuple[str, Any]]:
    """The events a throttle sends when an interval ends."""
    sent: list[tuple[str, Any]] = []
    monkeypatch.setattr(events, "_send", lambda group, event: sent.append((group, event)))
    return sent


def test_the_dashboards_hear_one_event_per_interval_and_the_latest_state_after(monkeypatch, released) -> None:
    monkeypatch.setattr(events, "FEED_INTERVAL", 0.3)
    throttle = events._Throttle()
    assert throttle.allow(_event("running"), STATUS_GROUP)
    # A state change within the interval waits (a page would get it at once)...
    assert not throttle.allow(_event("running", target="receiving"), STATUS_GROUP)
    assert not throttle.allow(_event("running", target="receiving", done=50), STATUS_GROUP)
    assert throttle.allow(_event("running", target="receiving"), transfer_group(7))
    # ...and the latest of them goes out when the interval ends.
    deadline = time.monotonic() + 10
    while not released and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [(g, e["targets"][0]["bytes_done"]) for g, e in released] == [(STATUS_GROUP, 50)]


def test_the_end_of_a_cast_reaches_the_dashboards_at_once(monkeypatch, released) -> None:
    monkeypatch.setattr(events, "FEED_INTERVAL", 0.3)
    throttle = events._Throttle()
    assert throttle.allow(_event("running"), STATUS_GROUP)
    assert not throttle.allow(_event("running", target="receiving", done=50), STATUS_GROUP)
    assert throttle.allow(_event("completed", target="completed", done=100), STATUS_GROUP)
    # The state held back before the end is older than the end: it never goes out, not
    # even once its interval is over.
    time.sleep(2 * events.FEED_INTERVAL)
    assert released == []


def test_a_transfers_page_hears_every_state_and_progress_four_times_a_second(released) -> None:
    throttle = events._Throttle()
    page = transfer_group(7)
    assert throttle.allow(_event("running"), page)
    assert throttle.allow(_event("running", target="receiving"), page)
    assert not throttle.allow(_event("running", target="receiving", done=10), page)  # progress only


@pytest.mark.asyncio
async def test_the_dashboards_get_a_status_snapshot_when_counts_can_move_not_per_target_step(monkeypatch) -> None:
    feed = Feed()
    snapshots, sent = [], []

    async def labels(transfer_id: int) -> dict[str, str]:
        return {}

    async def send_all(text: str) -> None:
        sent.append(text)

    monkeypatch.setattr(feed, "transfer_labels", labels)
    monkeypatch.setattr(feed, "send_all", send_all)
    monkeypatch.setattr(feed, "status_changed", lambda: snapshots.append(1))
    for event, counts_move in [
        (_event("running"), True),  # the cast started
        (_event("running", target="receiving"), False),
        (_event("running", target="verifying", done=100), False),
        (_event("running", target="completed", done=100), True),  # its node's receipt ended
        (_event("completed", target="completed", done=100), True),
    ]:
        before = len(snapshots)
        await feed.relay_event(dict(event))
        assert len(snapshots) - before == counts_move, event["targets"][0]["status"]
    assert len(sent) == 5  # every event itself reaches the dashboards
