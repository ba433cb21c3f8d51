"""Benchmarks of casting through the whole system: broadcast, modes and messages.

Each runs real rows, a worker of its own (scoped to the nodes it makes), real actors, real
sockets and real files, and measures its reference in the same run (see docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings

from bridge.worker import Worker
from dataplane.contract import Caps
from nodes.edit_services import node_register
from nodes.models import Node
from transfers.models import Message, Transfer
from transfers.services import messages_create_bulk, transfer_create

MiB = 1024 * 1024


class BenchCluster:
    """Temporary nodes and a worker that serves only them; `close()` removes everything."""

    def __init__(self, *, ray_address: str | None = None) -> None:
        self.tag = f"bench-{uuid.uuid4().hex[:6]}-"
        self.root = Path(settings.DATA_DIR) / "bench" / self.tag.rstrip("-")
        self.worker = Worker(worker_id=self.tag + "worker", node_prefix=self.tag, ray_address=ray_address)
        self.nodes: list[Node] = []

    def connect(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.worker.ensure_connected():
            if time.monotonic() > deadline:
                raise RuntimeError("could not connect to Ray; see the cluster's last_error")
            time.sleep(0.5)

    def make_nodes(self, n: int, *, cap: int | None = None, ray_node_ids: list[str] | None = None) -> list[Node]:
        """`n` nodes, each pinned to the Ray node of the same position in `ray_node_ids` if given."""
        start = len(self.nodes)
        for i in range(start, start + n):
            # No cap (0 or None): the node takes the default.
            limits = {"egress_cap": cap, "ingress_cap": cap} if cap else {}
            pin = ray_node_ids[i - start] if ray_node_ids else ""
            node = node_register(name=f"{self.tag}{i}", storage_dir=str(self.root / str(i)), ray_node_id=pin, **limits)
            self.nodes.append(node)
        names = [n.name for n in self.nodes]
        if not self.worker.run_until(
            lambda: Node.objects.online().filter(name__in=names).count() == len(names), timeout=120
        ):
            states = list(Node.objects.filter(name__in=names).values_list("name", "status", "status_detail"))
            raise RuntimeError(f"bench nodes did not come online: {states}")
        self.nodes = list(Node.objects.filter(name__in=names).order_by("pk"))
        for node in self.nodes:
            self.call(node, "ping", Caps(node.egress_cap, node.ingress_cap))
        return self.nodes[start:]

    def call(self, node: Node, method: str, *args: Any) -> Any:
        import ray

        return ray.get(getattr(self.worker.actors[node.pk], method).remote(*args))

    def generate(self, node: Node, name: str, size: int) -> dict[str, Any]:
        return self.call(node, "generate_file", name, size, "random", self.worker.config.chunk_size)

    def cast(self, **kwargs: Any) -> tuple[Transfer, float]:
        started = time.perf_counter()
        transfer = transfer_create(**kwargs)

        def done() -> bool:
            transfer.refresh_from_db()
            return transfer.status in Transfer.FINAL

        if not self.worker.run_until(done, timeout=3600):
            raise RuntimeError(f"cast {transfer.pk} did not finish")
        return transfer, time.perf_counter() - started

    def peak_rss(self, nodes: list[Node]) -> float:
        return max(self.call(node, "ping").peak_rss_mib for node in nodes)

    def memory_now(self, nodes: list[Node]) -> dict[str, float]:
        """The largest private and object-store-mapped resident memory among `nodes` now.

        The kernel's peak RSS counts pages of Ray's shared object store that an actor has
        mapped (object_store mode); these two keys say how much of it is which.
        """
        pings = [self.call(node, "ping") for node in nodes]
        return {
            "private_mib": max(p.rss_anon_mib for p in pings),
            "object_store_mapped_mib": max(p.rss_shmem_mib for p in pings),
        }

    def remove(self, nodes: list[Node], name: str) -> None:
        for node in nodes:
            self.call(node, "delete_file", name)

    def close(self) -> None:
        for node_id in list(self.worker.actors):
            self.worker.stop_actor(node_id)
        names = [n.name for n in self.nodes]
        Message.objects.filter(sender__name__in=names).delete()
        Transfer.objects.filter(source__name__in=names).delete()
        Node.objects.filter(name__in=names).delete()
        shutil.rmtree(self.root, ignore_errors=True)


def settle() -> None:
    """Start a timed run on a quiet disk: write back (and discard) what the last step wrote or deleted.

    Removing a 1 GiB copy on a file system mounted with `discard` leaves work for the next
    journal commit; whichever run came next paid for it.
    """
    os.sync()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(8 * MiB):
            digest.update(block)
    return digest.hexdigest()


def rayget_reference(cluster: BenchCluster, source: Node, name: str, n: int) -> float:
    """`ray.put` the file once, N actors `ray.get` it and write it to disk (no caps: Ray has none)."""
    import ray

    from dataplane.reference import RayGetWriter

    writers = [ray.remote(RayGetWriter).options(num_cpus=0).remote() for _ in range(n)]
    ray.get([w.__ray_ready__.remote() for w in writers])
    out = cluster.root / "rayget"
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    ref = ray.put((Path(source.storage_root) / name).read_bytes())
    ray.get([w.write.remote(ref, str(out / f"{i}.bin")) for i, w in enumerate(writers)])
    seconds = time.perf_counter() - started
    del ref
    for writer in writers:
        ray.kill(writer)
    shutil.rmtree(out, ignore_errors=True)
    return seconds


def data_seconds(transfer: Transfer) -> float:
    ends = [t.finished_at for t in transfer.targets.all() if t.finished_at]
    if not transfer.started_at or not ends:
        return 0.0
    return (max(ends) - transfer.started_at).total_seconds()


def bench_broadcast(*, size: int, nodes: list[int], cap: int) -> list[dict[str, Any]]:
    cluster = BenchCluster()
    results = []
    try:
        cluster.connect()
        members = cluster.make_nodes(max(nodes) + 1, cap=cap)
        source, name = members[0], "broadcast.bin"
        info = cluster.generate(source, name, size)
        for n in nodes:
            targets = members[1 : n + 1]
            tree, seconds = cluster.cast(source=source, file_name=name, targets=targets, fan_out=1)
            ok = tree.status == Transfer.Status.COMPLETED and all(
                sha256_file(Path(t.storage_root) / name) == info.sha256 for t in targets
            )
            peak = cluster.peak_rss([source, *targets])
            cluster.remove(targets, name)
            star, star_seconds = cluster.cast(source=source, file_name=name, targets=targets, fan_out=n)
            ok = ok and star.status == Transfer.Status.COMPLETED
            cluster.remove(targets, name)
            rayget_seconds = rayget_reference(cluster, source, name, n)
            # Uncapped, there is no bandwidth to reach: the reference is ray.get's time.
            ideal = size / cap if cap else rayget_seconds
            results.append(
                {
                    "bench": "broadcast",
                    "case": f"n={n}",
                    "size_bytes": size,
                    "seconds": round(seconds, 3),
                    "ratio": round(star_seconds / seconds, 3),
                    "peak_rss_mib": peak,
                    "ok": ok,
                    "efficiency": round(ideal / seconds, 3),
                    "source_bytes_ratio": round(tree.source_bytes_sent / size, 3),
                    "star_seconds": round(star_seconds, 3),
                    # Bytes moving only: from the round's start to the last target's own finish.
                    "cast_seconds": round(data_seconds(tree), 3),
                    "star_efficiency": round(ideal / star_seconds, 3),
                    "rayget_seconds": round(rayget_seconds, 3),
                    "cap_mib_s": cap / MiB,
                }
            )
    finally:
        cluster.close()
    return results


def bench_modes(*, size: int, targets: int = 1) -> list[dict[str, Any]]:
    cluster = BenchCluster()
    results = []
    try:
        cluster.connect()
        members = cluster.make_nodes(targets + 1)
        source, name = members[0], "modes.bin"
        info = cluster.generate(source, name, size)
        tcp_mb_s = None
        for mode in ("tcp", "udp", "object_store"):
            transfer, seconds = cluster.cast(source=source, file_name=name, targets=members[1:], mode=mode)
            ok = transfer.status == Transfer.Status.COMPLETED and all(
                sha256_file(Path(t.storage_root) / name) == info.sha256 for t in members[1:]
            )
            mb_s = size / seconds / 1e6
            tcp_mb_s = tcp_mb_s or mb_s
            results.append(
                {
                    "bench": "modes",
                    "case": mode,
                    "size_bytes": size,
                    "seconds": round(seconds, 3),
                    "ratio": round(mb_s / tcp_mb_s, 3),
                    "peak_rss_mib": cluster.peak_rss(members),
                    **cluster.memory_now(members),
                    "ok": ok,
                    "mb_s": round(mb_s, 1),
                    "source_bytes_ratio": round(transfer.source_bytes_sent / size, 3),
                }
            )
            cluster.remove(members[1:], name)
    finally:
        cluster.close()
    return results


_REFERENCE_RECEIVER = """
import json, socket, sys
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
conn, _ = server.accept()
inbox, buf = [], b""
with conn, conn.makefile("rb") as lines:
    for line in lines:
        inbox.append(json.loads(line))
print(len(inbox), flush=True)
"""


def message_reference(count: int, body: str) -> float:
    """A minimal program: the same messages as JSON lines over one loopback socket into a list."""
    receiver = subprocess.Popen([sys.executable, "-c", _REFERENCE_RECEIVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(receiver.stdout.readline())  # type: ignore[union-attr]
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"".join(json.dumps({"id": i, "content": body}).encode() + b"\n" for i in range(count)))
        got = int(receiver.stdout.readline())  # type: ignore[union-attr]
        seconds = time.perf_counter() - started
    finally:
        receiver.wait(timeout=30)
    assert got == count
    return seconds


def bench_messages(*, count: int, fan: int = 8) -> list[dict[str, Any]]:
    cluster = BenchCluster()
    results = []
    body = "x" * 100
    try:
        cluster.connect()
        members = cluster.make_nodes(fan + 1)
        reference = message_reference(count, body)
        for case, targets in (("unicast", members[1:2]), (f"broadcast-{fan}", members[1:])):
            started = time.perf_counter()
            ids = messages_create_bulk(sender=members[0], contents=[body] * count, targets=targets)

            def done(ids: list[int] = ids) -> bool:
                return not Message.objects.filter(pk__in=ids, status__in=["queued", "running"]).exists()

            cluster.worker.run_until(done, timeout=600)
            seconds = time.perf_counter() - started
            ok = not Message.objects.filter(pk__in=ids).exclude(status=Message.Status.COMPLETED).exists()
            inbox = cluster.call(targets[-1], "inbox_latest", 1)
            ok = ok and bool(inbox) and inbox[0]["content"] == body
            per_s = count / seconds
            results.append(
                {
                    "bench": "messages",
                    "case": case,
                    "size_bytes": count * len(body),
                    "seconds": round(seconds, 3),
                    "ratio": round(per_s / (count / reference), 4),
                    "peak_rss_mib": cluster.peak_rss(members),
                    "ok": ok,
                    "per_s": round(per_s),
                    "deliveries_per_s": round(per_s * len(targets)),
                    "reference_per_s": round(count / reference),
                }
            )
    finally:
        cluster.close()
    return results


_REFERENCE = r"""
import os, socket, sys, time
role = sys.argv[1]
if role == "recv":
    out = sys.argv[2]
    server = socket.create_server(("127.0.0.1", 0))
    print(server.getsockname()[1], flush=True)
    conn, _ = server.accept()
    buf = bytearray(1 << 20)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    while n := conn.recv_into(buf):
        os.write(fd, memoryview(buf)[:n])
    os.fsync(fd)
    os.close(fd)
    conn.sendall(b"k")
    conn.close()
else:
    path, port = sys.argv[2], int(sys.argv[3])
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock, open(path, "rb") as handle:
        sock.sendfile(handle)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b"k"
    print(time.perf_counter() - started, flush=True)
"""


def unicast_reference(path: Path, out: Path) -> float:
    """A minimal program pair: sendfile over loopback TCP, the receiver writes and fsyncs."""
    receiver = subprocess.Popen([sys.executable, "-c", _REFERENCE, "recv", str(out)], stdout=subprocess.PIPE, text=True)
    try:
        port = receiver.stdout.readline().strip()  # type: ignore[union-attr]
        sender = subprocess.run(
            [sys.executable, "-c", _REFERENCE, "send", str(path), port], capture_output=True, text=True, check=True
        )
        receiver.wait(timeout=600)
    finally:
        if receiver.poll() is None:
            receiver.kill()
    seconds = float(sender.stdout.strip())
    out.unlink(missing_ok=True)
    return seconds


def bench_unicast(*, sizes: list[int], repeat: int = 1) -> list[dict[str, Any]]:
    cluster = BenchCluster()
    results = []
    try:
        cluster.connect()
        source, target = cluster.make_nodes(2)
        for size in sizes:
            name = f"unicast-{size}.bin"
            info = cluster.generate(source, name, size)
            path = Path(source.storage_root) / name
            ours, refs, ok = [], [], True
            # Alternate the two so that drift on a shared machine hits both alike; keep the best.
            for _ in range(repeat):
                settle()
                refs.append(unicast_reference(path, cluster.root / "reference.out"))
                settle()
                transfer, seconds = cluster.cast(source=source, file_name=name, targets=[target])
                ok = ok and transfer.status == Transfer.Status.COMPLETED
                ok = ok and sha256_file(Path(target.storage_root) / name) == info.sha256
                ours.append(seconds)
                cluster.remove([target], name)
            seconds, reference = min(ours), min(refs)
            mb_s, ref_mb_s = size / seconds / 1e6, size / reference / 1e6
            # Each run against the reference measured just before it; the figure is the median.
            pairs = sorted(ref / ours_s for ref, ours_s in zip(refs, ours, strict=True))
            results.append(
                {
                    "bench": "unicast",
                    "case": _size_label(size),
                    "size_bytes": size,
                    "seconds": round(seconds, 3),
                    "ratio": round(mb_s / ref_mb_s, 3),
                    "median_ratio": round(pairs[len(pairs) // 2], 3),
                    "peak_rss_mib": cluster.peak_rss([source, target]),
                    "ok": ok,
                    "mb_s": round(mb_s, 1),
                    "reference_mb_s": round(ref_mb_s, 1),
                    "repeat": repeat,
                }
            )
            cluster.remove([source], name)
    finally:
        cluster.close()
    return results


def _size_label(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", MiB), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"
