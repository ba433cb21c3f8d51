"""The other ways to move a file: through Ray's object store, and reliable UDP.

Both keep TCP mode's guarantees: a CRC32 per chunk (or datagram), the whole file's SHA-256
checked at every receiver, `.part` then fsync then rename. Must not import Django.

- object_store: the source puts each chunk into Ray's object store once; every receiver's
  actor gets it from there (Ray moves it between hosts) and writes it.
- udp: datagrams (sequence number, CRC32, payload) sent at a paced rate to each receiver;
  after each pass the receiver answers over the TCP control connection with the ranges it
  is missing (NACK) and the sender repeats only those. Per-receiver unicast UDP: no IP
  multicast is attempted (see the README).
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

from dataplane import wire
from dataplane.contract import CastPlan, Hop, Results, TargetResult, results_from_wire
from dataplane.engine import Counters, Limits, Progress, TokenBucket
from dataplane.partfile import PartFile
from dataplane.storage import Manifest, ManifestCache, UnsafePath, checksum

DATAGRAM = struct.Struct("!III")  # transfer, sequence, crc32c
DATAGRAM_PAYLOAD = 8192
UDP_MAX_PASSES = 50
UDP_QUIET = 0.05  # seconds without datagrams before the receiver answers a pass


# --- object store --------------------------------------------------------------------------
def store_cast(
    plan: CastPlan, path: Path, manifest: Manifest, *, limits: Limits, counters: Counters, window: int = 8
) -> Results:
    """Source side: put every chunk into the object store once; each target pulls it."""
    import ray

    transfer = plan.transfer
    name = plan.dest_name
    results: Results = {}
    handles: dict[int, Any] = {}
    begins = {}
    for hop in plan.targets():
        target = hop.target
        try:
            handles[target] = ray.get_actor(plan.actors[target], namespace=plan.namespace)
        except (KeyError, ValueError) as exc:
            results[target] = TargetResult(status="failed", error=f"no actor for {hop.node}: {exc}")
            continue
        begins[target] = handles[target].store_begin.remote(
            transfer, target, name, manifest.size, manifest.sha256, manifest.chunk_size
        )
    have: dict[int, bytearray] = {}
    for target, ref in begins.items():
        try:
            answer = ray.get(ref, timeout=limits.io_timeout)
        except Exception as exc:  # noqa: BLE001 - each target fails on its own
            results[target] = TargetResult(status="failed", error=f"could not start: {exc}")
            continue
        if answer["status"] != "ready":
            results[target] = TargetResult(status=answer["status"], error=answer.get("error", ""))
            continue
        have[target] = wire.bitmap_from_hex(answer["have"], manifest.chunk_count)
    pending: list[tuple[int, Any]] = []
    failed: dict[int, str] = {}

    def drain(limit: int) -> None:
        while len(pending) > limit:
            target, ref = pending.pop(0)
            try:
                ray.get(ref, timeout=limits.io_timeout)
            except Exception as exc:  # noqa: BLE001
                failed.setdefault(target, f"chunk delivery failed: {_first_line(exc)}")

    with open(path, "rb", buffering=0) as handle:
        for index in range(manifest.chunk_count):
            wanting = [t for t in have if t not in failed and not wire.bit_get(have[t], index)]
            if not wanting:
                continue
            limits.check(transfer)
            length = min(manifest.chunk_size, manifest.size - index * manifest.chunk_size)
            if limits.egress:
                limits.egress.consume(length)
            data = os.pread(handle.fileno(), length, index * manifest.chunk_size)
            ref = ray.put(data)
            del data
            counters.add(transfer, length)
            for target in wanting:
                pending.append(
                    (target, handles[target].store_chunk.remote(transfer, target, index, manifest.crcs[index], ref))
                )
            drain(window * max(1, len(wanting)))
    drain(0)
    ends = {t: handles[t].store_end.remote(transfer, t, failed.get(t, "")) for t in have}
    for target, ref in ends.items():
        try:
            results[target] = ray.get(ref, timeout=limits.io_timeout + manifest.size / (1024 * 1024))
        except Exception as exc:  # noqa: BLE001
            results[target] = TargetResult(status="failed", error=f"could not finish: {_first_line(exc)}")
    return results


class StoreReceiver:
    """Receiver side of object-store mode: one PartFile per (transfer, target)."""

    def __init__(self, root: Path, manifests: ManifestCache, progress: Progress, limits: Limits) -> None:
        self.root = root
        self.manifests = manifests
        self.progress = progress
        self.limits = limits
        self.parts: dict[tuple[int, int], PartFile] = {}
        self.lock = threading.Lock()

    def begin(self, transfer: int, target: int, name: str, size: int, sha256: str, chunk_size: int) -> dict[str, Any]:
        try:
            part = PartFile(self.root, name, size, sha256, chunk_size)
        except (OSError, UnsafePath) as exc:
            return {"status": "failed", "error": str(exc)}
        self.progress.set(transfer, target, status="receiving", started=time.time(), size=size, bytes_done=0)
        if part.already_complete(self.manifests):
            part.abandon(delete=True)
            self.progress.set(transfer, target, status="skipped", finished=time.time())
            return {"status": "skipped"}
        self.progress.add_bytes(transfer, target, part.held_bytes())
        with self.lock:
            self.parts[(transfer, target)] = part
        return {"status": "ready", "have": wire.bitmap_to_hex(part.have)}

    def chunk(self, transfer: int, target: int, index: int, crc: int, data: bytes) -> None:
        part = self.parts[(transfer, target)]
        self.limits.check(transfer)
        if self.limits.ingress:
            self.limits.ingress.consume(len(data))
        part.write(index, data, crc)
        self.progress.add_bytes(transfer, target, len(data), received=len(data))

    def end(self, transfer: int, target: int, error: str) -> TargetResult:
        with self.lock:
            part = self.parts.pop((transfer, target))
        if error:
            part.abandon()
            outcome = TargetResult(status="failed", error=error, bytes_received=part.received)
        else:
            self.progress.set(transfer, target, status="verifying")
            try:
                digest = part.finish(self.manifests)
                outcome = TargetResult(status="completed", sha256=digest, bytes_received=part.received)
            except (OSError, ValueError) as exc:
                part.abandon()
                outcome = TargetResult(status="failed", error=str(exc), bytes_received=part.received)
        self.progress.set(
            transfer,
            target,
            finished=time.time(),
            status=outcome.status,
            error=outcome.error,
            sha256=outcome.sha256,
            bytes_received=outcome.bytes_received,
        )
        return outcome


# --- reliable UDP --------------------------------------------------------------------------
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
                    part.write(seq, view[DATAGRAM.size : n], crc)
                except wire.ProtocolError:
                    continue  # a damaged or stray datagram is simply missing: it will be repaired
                progress.add_bytes(transfer, target, n - DATAGRAM.size, received=n - DATAGRAM.size)

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        wire.send_json(sock, {"status": "ready", "udp_port": udp.getsockname()[1], "have": ""})
        try:
            while True:
                request = wire.recv_json(sock)
                if request.get("op") != "end":
                    raise wire.ProtocolError("expected the end of a pass")
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
            digest = part.finish(manifests)
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


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:300]
