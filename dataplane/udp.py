"""UDP mode: reliable unicast UDP, repaired by NACKs over a TCP control connection.

Datagrams (sequence number, CRC-32C, payload) are sent at a paced rate to each receiver; after
each pass the receiver answers over the TCP control connection with the ranges it is missing
(NACK) and the sender repeats only those. Per-receiver unicast UDP: no IP multicast is
attempted (see the README). The receiver verifies the whole SHA-256, fsyncs and renames like
TCP mode. The receive side is entered from `receiver.Receiver` on a `mode: udp` offer; this
module does not import the receiver. Must not import Django.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

from dataplane import wire
from dataplane.contract import CastPlan, Hop, Results, TargetResult, results_from_wire
from dataplane.flow import Counters, Limits, Progress, TokenBucket
from dataplane.partfile import PartFile
from dataplane.storage import Manifest, ManifestCache, checksum

DATAGRAM = struct.Struct("!III")  # transfer, sequence, crc32c
DATAGRAM_PAYLOAD = 8192
UDP_MAX_PASSES = 50
UDP_QUIET = 0.05  # seconds without datagrams before the receiver answers a pass


def udp_cast(
    plan: CastPlan,
    path: Path,
    manifest: Manifest,
    *,
    secret: bytes,
    limits: Limits,
    counters: Counters,
) -> Results:
    """Source side: one thread per receiver, each a paced UDP stream with NACK repair."""
    results: Results = {}
    pacer = TokenBucket(plan.udp_rate) if plan.udp_rate else None

    def run(hop: Hop) -> None:
        results[hop.target] = _udp_send_one(plan, hop, path, manifest, secret, limits, counters, pacer)

    threads = [threading.Thread(target=run, args=(hop,), daemon=True) for hop in plan.targets()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _udp_send_one(
    plan: CastPlan,
    hop: Hop,
    path: Path,
    manifest: Manifest,
    secret: bytes,
    limits: Limits,
    counters: Counters,
    pacer: TokenBucket | None,
) -> TargetResult:
    transfer, target = plan.transfer, hop.target
    offer = {
        "transfer": transfer,
        "target": target,
        "name": plan.dest_name,
        "size": manifest.size,
        "sha256": manifest.sha256,
        "chunk_size": manifest.chunk_size,
        "children": [],
        "mode": "udp",
        "datagram": DATAGRAM_PAYLOAD,
    }
    offer["mac"] = wire.sign(secret, offer)
    drop_every = plan.udp_drop_every  # a test and benchmark knob: lose datagrams on purpose
    sent_datagrams = 0
    try:
        with (
            socket.create_connection((hop.address, hop.port), timeout=10) as control,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
            open(path, "rb", buffering=0) as handle,
        ):
            control.settimeout(limits.io_timeout)
            wire.send_json(control, offer, magic=True)
            answer = wire.recv_json(control)
            if isinstance(answer.get("results"), dict):
                return results_from_wire(answer["results"]).get(target, TargetResult(status="failed", error="refused"))
            if answer.get("status") == "skip":
                return results_from_wire(wire.recv_json(control)["results"])[target]
            if answer.get("status") != "ready":
                return TargetResult(status="failed", error=f"refused: {answer.get('error')}")
            dest = (hop.address, int(answer["udp_port"]))
            count = -(-manifest.size // DATAGRAM_PAYLOAD)
            todo: list[int] = list(range(count))
            for attempt in range(UDP_MAX_PASSES):
                for seq in todo:
                    limits.check(transfer)
                    length = min(DATAGRAM_PAYLOAD, manifest.size - seq * DATAGRAM_PAYLOAD)
                    data = os.pread(handle.fileno(), length, seq * DATAGRAM_PAYLOAD)
                    for bucket in (pacer, limits.egress):
                        if bucket:
                            bucket.consume(length)
                    counters.add(transfer, length)
                    sent_datagrams += 1
                    if attempt == 0 and drop_every and seq % drop_every == 0:
                        continue  # "lost" on the way
                    udp.sendto(DATAGRAM.pack(transfer, seq, checksum(data)) + data, dest)
                wire.send_json(control, {"op": "end", "pass": attempt})
                reply = wire.recv_json(control)
                if "results" in reply:
                    result = results_from_wire(reply["results"])[target]
                    result.udp_transport = "unicast"
                    result.udp_passes = attempt + 1
                    return result
                todo = [seq for start, end in reply["missing"] for seq in range(start, end)]
            return TargetResult(status="failed", error=f"still missing data after {UDP_MAX_PASSES} repair passes")
    except ConnectionAbortedError as exc:
        return TargetResult(status="cancelled", error=str(exc))
    except (OSError, wire.ProtocolError, KeyError, ValueError) as exc:
        return TargetResult(status="failed", error=f"udp link to {hop.node} failed: {exc}")


def udp_receive(
    sock: socket.socket,
    offer: dict[str, Any],
    *,
    root: Path,
    address: str,
    manifests: ManifestCache,
    progress: Progress,
    limits: Limits,
) -> TargetResult:
    """Receiver side, on the accepted TCP control connection of a `mode: udp` offer."""
    transfer, target = int(offer["transfer"]), int(offer["target"])
    size, payload = int(offer["size"]), int(offer["datagram"])
    if not 512 <= payload <= 65000:
        raise wire.ProtocolError("datagram size out of range")
    part = PartFile(root, str(offer["name"]), size, str(offer["sha256"]), payload, record=False)
    if part.already_complete(manifests):
        part.abandon(delete=True)
        wire.send_json(sock, {"status": "skip"})
        return TargetResult(status="skipped")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        udp.bind((address, 0))
        udp.settimeout(0.2)
        last = [time.monotonic()]
        stop = threading.Event()

        def listen() -> None:
            buf = bytearray(DATAGRAM.size + payload)
            view = memoryview(buf)
            while not stop.is_set():
                try:
                    n = udp.recv_into(buf)
                except TimeoutError:
                    continue
                except OSError:
                    return
                last[0] = time.monotonic()
                if n < DATAGRAM.size:
                    continue
                t, seq, crc = DATAGRAM.unpack_from(buf)
                if t != transfer:
                    continue
                try:
                    new = part.write(seq, view[DATAGRAM.size : n], crc)
                except wire.ProtocolError:
                    continue  # a damaged or stray datagram is simply missing: it will be repaired
                if not new:
                    continue  # a repeat (a repair that crossed a late original) is no progress
                progress.add_bytes(transfer, target, n - DATAGRAM.size, received=n - DATAGRAM.size)

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        wire.send_json(sock, {"status": "ready", "udp_port": udp.getsockname()[1], "have": ""})
        try:
            while True:
                request = wire.recv_json(sock)
                if request.get("op") != "end":
                    raise wire.ProtocolError("expected the end of a pass")
                limits.check(transfer, target)
                # Let datagrams still in the socket buffer land before answering.
                while time.monotonic() - last[0] < UDP_QUIET:
                    time.sleep(UDP_QUIET / 2)
                missing = part.missing()
                if not missing:
                    break
                wire.send_json(sock, {"missing": _ranges(missing)})
        finally:
            stop.set()
            listener.join()
        progress.set(transfer, target, status="verifying")
        try:
            digest = part.finish(manifests, partial(limits.committing, transfer, target))
        except (OSError, ValueError) as exc:
            part.abandon(delete=True)
            return TargetResult(status="failed", error=str(exc), bytes_received=part.received)
        return TargetResult(status="completed", sha256=digest, bytes_received=part.received)
    finally:
        udp.close()
        if part.fd >= 0:
            part.abandon(delete=True)


def _ranges(seqs: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for seq in seqs:
        if out and out[-1][1] == seq:
            out[-1][1] = seq + 1
        else:
            out.append([seq, seq + 1])
    return out
