"""The TCP wire protocol: control messages, signatures, chunk headers and chunk bitmaps."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from dataplane import wire

pytestmark = pytest.mark.unit

SECRET = b"cluster-secret"


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.settimeout(5)
    b.settimeout(5)
    yield a, b
    a.close()
    b.close()


@pytest.mark.parametrize("magic", [True, False])
def test_a_control_message_round_trips(pair: tuple[socket.socket, socket.socket], magic: bool) -> None:
    a, b = pair
    message = {"transfer": 7, "name": "dir/å.bin", "children": [{"target": 1}], "size": 2**40}
    wire.send_json(a, message, magic=magic)
    wire.send_json(a, {"second": True})
    assert wire.recv_json(b, magic=magic) == message
    assert wire.recv_json(b) == {"second": True}  # framing leaves the next message intact


def test_a_connection_without_the_magic_is_refused(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.sendall(b"CRY1" + wire.LEN.pack(2) + b"{}")  # an older peer
    with pytest.raises(wire.ProtocolError, match="bad magic"):
        wire.recv_json(b, magic=True)


def test_an_oversized_control_message_is_refused_before_it_is_read(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.sendall(wire.LEN.pack(wire.MAX_JSON + 1))  # no body: the length alone is refused
    with pytest.raises(wire.ProtocolError, match="too large"):
        wire.recv_json(b)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"3", "not a JSON object"),
    ],
)
def test_a_control_message_that_is_not_a_json_object_is_refused(
    pair: tuple[socket.socket, socket.socket], body: bytes, reason: str
) -> None:
    a, b = pair
    a.sendall(wire.LEN.pack(len(body)) + body)
    with pytest.raises(wire.ProtocolError, match=reason):
        wire.recv_json(b)


def test_a_peer_closing_inside_a_message_is_a_connection_error(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.sendall(wire.LEN.pack(10) + b"{}")
    a.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionError, match="after 2 of 10 bytes"):
        wire.recv_json(b)


def test_a_signed_offer_verifies_and_a_tampered_one_does_not() -> None:
    offer = {"transfer": 1, "target": 2, "name": "f.bin", "size": 100, "children": []}
    offer["mac"] = wire.sign(SECRET, offer)
    assert wire.verify(SECRET, offer)
    assert wire.verify(SECRET, dict(reversed(list(offer.items()))))  # key order does not matter
    assert not wire.verify(SECRET, {**offer, "name": "../etc/passwd"})
    assert not wire.verify(SECRET, {**offer, "children": [{"target": 9}]})
    assert not wire.verify(b"another cluster", offer)
    assert not wire.verify(SECRET, {k: v for k, v in offer.items() if k != "mac"})
    assert not wire.verify(SECRET, {**offer, "mac": 12345})


def test_a_chunk_header_round_trips(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.sendall(wire.CHUNK.pack(3, 3 * 4096 * 2**20, 4096, 0xDEADBEEF))
    a.sendall(wire.CHUNK.pack(wire.END_INDEX, 0, 0, 0))
    assert wire.recv_chunk_header(b) == (3, 3 * 4096 * 2**20, 4096, 0xDEADBEEF)
    assert wire.recv_chunk_header(b) == (wire.END_INDEX, 0, 0, 0)


def test_a_chunk_bitmap_round_trips_through_hex() -> None:
    have = wire.new_bitmap(20)
    for index in (0, 9, 19):
        wire.bit_set(have, index)
    back = wire.bitmap_from_hex(wire.bitmap_to_hex(have), 20)
    assert [i for i in range(20) if wire.bit_get(back, i)] == [0, 9, 19]
    assert wire.bit_count(back, 20) == 3


def test_a_short_or_empty_bitmap_means_missing_chunks_and_a_long_one_is_cut() -> None:
    assert wire.bit_count(wire.bitmap_from_hex("", 20), 20) == 0
    assert wire.bitmap_from_hex("ff", 20) == bytearray(b"\xff\x00\x00")
    assert wire.bitmap_from_hex("ffffffffff", 9) == bytearray(b"\xff\xff")


@pytest.mark.parametrize("text", ["zz", "abc", "0x01"])
def test_a_bitmap_that_is_not_hex_is_refused(text: str) -> None:
    with pytest.raises(wire.ProtocolError, match="not hex"):
        wire.bitmap_from_hex(text, 8)
