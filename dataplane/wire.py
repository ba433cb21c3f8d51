"""CastRay's TCP wire protocol: framed raw chunks with per-chunk CRC-32C.

One connection carries one file to one receiver (which may relay it further):

    sender   -> receiver : MAGIC, u32 length, JSON offer (signed with the cluster secret)
    receiver -> sender   : u32 length, JSON answer  {"status": "ready", "have": hex bitmap}
                                                    | {"status": "skip"} | {"status": "error"}
    sender   -> receiver : chunk frames: CHUNK header (index, offset, length, crc32c) + raw bytes
                           ... then an END frame (index = END_INDEX)
    receiver -> sender   : u32 length, JSON result (for the receiver and the subtree it relayed to)

Only the offer, answer and result are JSON: chunks are raw bytes, sent from disk with
sendfile. This module must not import Django: it runs inside Ray actors.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import struct
from typing import Any

# CRY2: chunk checksums are CRC-32C (CRY1 peers used zlib's CRC32 and are refused).
MAGIC = b"CRY2"
LEN = struct.Struct("!I")
CHUNK = struct.Struct("!IQII")  # index, offset, length, crc32c
END_INDEX = 0xFFFFFFFF
MAX_JSON = 16 * 1024 * 1024


class ProtocolError(Exception):
    """The peer sent something that is not CastRay's protocol, or the wrong thing."""


def sign(secret: bytes, payload: dict[str, Any]) -> str:
    body = json.dumps({k: v for k, v in payload.items() if k != "mac"}, sort_keys=True)
    return hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()


def verify(secret: bytes, payload: dict[str, Any]) -> bool:
    mac = payload.get("mac")
    return isinstance(mac, str) and hmac.compare_digest(mac, sign(secret, payload))


def recv_exact(sock: socket.socket, view: memoryview) -> None:
    """Fill `view` completely from the socket, or raise ConnectionError."""
    got = 0
    total = len(view)
    while got < total:
        n = sock.recv_into(view[got:], total - got, socket.MSG_WAITALL)
        if n == 0:
            raise ConnectionError(f"peer closed the connection after {got} of {total} bytes")
        got += n


def send_json(sock: socket.socket, payload: dict[str, Any], *, magic: bool = False) -> None:
    body = json.dumps(payload).encode()
    sock.sendall((MAGIC if magic else b"") + LEN.pack(len(body)) + body)


def recv_json(sock: socket.socket, *, magic: bool = False) -> dict[str, Any]:
    if magic:
        head = bytearray(len(MAGIC))
        recv_exact(sock, memoryview(head))
        if bytes(head) != MAGIC:
            raise ProtocolError("not a CastRay connection (bad magic)")
    raw = bytearray(LEN.size)
    recv_exact(sock, memoryview(raw))
    (length,) = LEN.unpack(raw)
    if length > MAX_JSON:
        raise ProtocolError(f"control message of {length} bytes is too large")
    body = bytearray(length)
    recv_exact(sock, memoryview(body))
    try:
        payload = json.loads(body)
    except ValueError:
        raise ProtocolError("control message is not JSON") from None
    if not isinstance(payload, dict):
        raise ProtocolError("control message is not a JSON object")
    return payload


def recv_chunk_header(sock: socket.socket) -> tuple[int, int, int, int]:
    raw = bytearray(CHUNK.size)
    recv_exact(sock, memoryview(raw))
    return CHUNK.unpack(raw)


def bitmap_to_hex(have: bytearray) -> str:
    return bytes(have).hex()


def bitmap_from_hex(text: str, count: int) -> bytearray:
    try:
        raw = bytearray(bytes.fromhex(text or ""))
    except ValueError:
        raise ProtocolError("chunk bitmap is not hex") from None
    needed = (count + 7) // 8
    if len(raw) < needed:
        raw.extend(b"\0" * (needed - len(raw)))
    return raw[:needed]


def new_bitmap(count: int) -> bytearray:
    return bytearray((count + 7) // 8)


def bit_get(bits: bytearray, index: int) -> bool:
    return bool(bits[index >> 3] & (1 << (index & 7)))


def bit_set(bits: bytearray, index: int) -> None:
    bits[index >> 3] |= 1 << (index & 7)


def bit_count(bits: bytearray, count: int) -> int:
    return sum(1 for i in range(count) if bit_get(bits, i))


def drain(sock: socket.socket, timeout: float) -> None:
    """Read what the sender still sends until it closes, after the result went out.

    A receiver that fails mid-file answers at once; closing with chunks unread would reset the
    connection, and the sender would report "connection reset" instead of the reason. The
    sender stops within a chunk once it sees the answer.
    """
    sock.shutdown(socket.SHUT_WR)
    sock.settimeout(timeout)
    buf = bytearray(256 * 1024)
    while sock.recv_into(buf):
        pass
