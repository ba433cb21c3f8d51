"""A node's inbox: bounded, newest first, each message stored once however often it is delivered."""

from __future__ import annotations

from typing import Any

import pytest

from dataplane.inbox import Inbox

pytestmark = pytest.mark.unit


def message(delivery: int, message_id: int, content: str = "") -> dict[str, Any]:
    return {"id": delivery, "message": message_id, "sender": "n1", "kind": "text", "content": content, "created": ""}


def test_a_redelivered_message_is_acknowledged_but_stored_once() -> None:
    inbox = Inbox(10)
    assert inbox.put([message(1, 100, "hello")]) == [1]
    # A worker that died before recording the acknowledgement delivers it again.
    assert inbox.put([message(1, 100, "hello"), message(2, 101, "next")]) == [1, 2]
    assert inbox.put([message(3, 100, "hello")]) == [3]
    assert [m["content"] for m in inbox.latest(10)] == ["next", "hello"]


def test_a_full_inbox_keeps_the_newest_newest_first() -> None:
    inbox = Inbox(3)
    inbox.put([message(i, 100 + i, f"m{i}") for i in range(1, 6)])
    assert [m["content"] for m in inbox.latest(10)] == ["m5", "m4", "m3"]
    assert [m["content"] for m in inbox.latest(2)] == ["m5", "m4"]


def test_a_message_forgotten_by_the_bounded_memory_is_new_again() -> None:
    inbox = Inbox(1)  # remembers the last two message ids
    inbox.put([message(i, i, f"m{i}") for i in range(1, 4)])
    inbox.put([message(9, 3, "m3 again"), message(10, 1, "m1 again")])
    assert [m["content"] for m in inbox.latest(5)] == ["m1 again"]
