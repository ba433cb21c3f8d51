"""A node's message inbox, and delivering a batch of messages to another node's inbox.

Messages travel over the same signed TCP offer as files (`kind: messages`); the receiving
node's `Receiver` puts them into its `Inbox`. Must not import Django.
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from typing import Any

from dataplane import wire


class Inbox:
    """A node's received messages: bounded, newest kept, each message stored once."""

    def __init__(self, size: int) -> None:
        self._lock = threading.Lock()
        self._items: deque[dict[str, Any]] = deque(maxlen=size)
        self._seen: deque[int] = deque(maxlen=size * 2)
        self._seen_set: set[int] = set()

    def put(self, messages: list[dict[str, Any]]) -> list[int]:
        delivered = []
        with self._lock:
            for message in messages:
                key = int(message["message"])
                if key not in self._seen_set:  # a redelivery after a worker died is not a new message
                    self._items.append(message)
                    if len(self._seen) == self._seen.maxlen:
                        self._seen_set.discard(self._seen[0])
                    self._seen.append(key)
                    self._seen_set.add(key)
                delivered.append(int(message["id"]))
        return delivered

    def latest(self, count: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._items)[-count:][::-1]


def send_messages(
    address: str, port: int, messages: list[dict[str, Any]], *, secret: bytes, timeout: float
) -> set[int]:
    """Deliver a batch of messages to one node's inbox; return the delivery ids it acknowledged."""
    offer: dict[str, Any] = {"kind": "messages", "messages": messages}
    offer["mac"] = wire.sign(secret, offer)
    with socket.create_connection((address, port), timeout=timeout) as sock:
        wire.send_json(sock, offer, magic=True)
        answer = wire.recv_json(sock)
    if "error" in answer:
        raise ConnectionError(str(answer["error"]))
    return {int(i) for i in answer.get("delivered", [])}
