"""`castray_bench hetero --links shaped`: the straggler benchmark over shaped links between hosts.

The caps mode (bridge/bench/hetero.py) slows a node with CastRay's own caps, which the planner
reads. Here no node has a cap: each host is a network namespace with its own address and
raylet (bridge/bench/netns.py), and the rate is a tbf on its link, which CastRay neither sets
nor sees. host-1 is the source; host-2.. are the targets, in the order the cast lists them.

The bound: a target cannot finish before S / min(its ingress, the source's egress). Every byte
it gets crosses its own link inwards, and every byte leaves the source at least once, over the
source's link outwards, whoever relays it. Both rates are measured, not configured: one plain
TCP stream into and out of every host over its shaped link (`NetnsHosts.link_rate`), and once
more into and out of a host at the slow setting. The cast's own bound is Kumar and Ross's
(bridge/bounds.py) from the same rates. The reference is the `equal` case in the same run.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bridge.bench.casts import BenchCluster, MiB, sha256_file
from bridge.bench.hetero import CASES
from bridge.bench.netns import NetnsHosts, unavailable
from bridge.bounds import cast_bounds
from transfers.models import Transfer

Rates = tuple[float, float]  # measured (egress, ingress) of a host's link, bytes per second


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises like Ctrl-C while the hosts exist, so the teardown in `finally` runs."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _tbf(rate: float) -> str:
    return f"{int(rate)}bps"  # tc: bytes per second


def measure_links(net: NetnsHosts, rate: int) -> tuple[dict[str, Rates], Rates]:
    """Every host's link at `rate`, and one host's at `rate`/4, each way, as one TCP stream gets it."""

    def probe(name: str, at: float) -> Rates:
        size = max(MiB, int(at))  # about a second of the configured rate
        return net.link_rate(name, into=False, size=size), net.link_rate(name, into=True, size=size)

    full = {}
    for host in net.hosts:
        net.shape(host.name, rate=_tbf(rate))
        full[host.name] = probe(host.name, rate)
    probe_host = net.hosts[-1].name
    net.shape(probe_host, rate=_tbf(rate / 4))
    quarter = probe(probe_host, rate / 4)
    net.shape(probe_host, rate=_tbf(rate))
    return full, quarter


def _ray_node_ids(net: NetnsHosts, timeout: float = 120) -> list[str]:
    """The Ray node id of every host's raylet, in host order, once all have joined."""
    import ray

    deadline = time.monotonic() + timeout
    while True:
        by_address = {n["NodeManagerAddress"]: n["NodeID"] for n in ray.nodes() if n.get("Alive")}
        if all(h.address in by_address for h in net.hosts):
            return [by_address[h.address] for h in net.hosts]
        if time.monotonic() > deadline:
            raise RuntimeError(f"raylets did not join: {sorted(by_address)}\n{net.cluster.logs()}")
        time.sleep(0.3)


def bench_hetero_shaped(*, size: int, targets: int, rate: int) -> list[dict[str, Any]]:
    why = unavailable()
    if why:
        raise RuntimeError(f"--links shaped needs network namespaces: {why}")
    net = NetnsHosts(targets + 1, name="bench")
    cluster: BenchCluster | None = None
    results: list[dict[str, Any]] = []
    with _terminate_as_interrupt():
        try:
            net.up()
            net.start_ray(one_by_one=True)  # before any shaping, as the tests do
            cluster = BenchCluster(ray_address=net.cluster.address)
            cluster.connect()
            members = cluster.make_nodes(len(net.hosts), ray_node_ids=_ray_node_ids(net))
            full, quarter = measure_links(net, rate)
            hosts = {node.pk: host.name for node, host in zip(members, net.hosts, strict=True)}
            source, name = members[0], "hetero.bin"
            info = cluster.generate(source, name, size)
            reference: dict[str, float] = {}
            for case, slow in CASES.items():
                order = members[1:]
                rates = dict(full)
                for host in net.hosts:
                    net.shape(host.name, rate=_tbf(rate))
                slow_host = None
                if slow is not None:
                    slow_host = hosts[order[slow[0]].pk]
                    egress, ingress = rate * slow[1], rate * slow[2]
                    net.shape(slow_host, rate=_tbf(egress), ingress=_tbf(ingress))
                    e, i = rates[slow_host]
                    rates[slow_host] = (quarter[0] if slow[1] < 1 else e, quarter[1] if slow[2] < 1 else i)
                transfer, wall = cluster.cast(source=source, file_name=name, targets=order)
                ok = transfer.status == Transfer.Status.COMPLETED and all(
                    sha256_file(Path(n.storage_root) / name) == info.sha256 for n in order
                )
                rows = measure(transfer, case, hosts, rates, slow_host, reference)
                peak = cluster.peak_rss(members)
                for row in rows:
                    row.update(size_bytes=size, ok=ok, peak_rss_mib=peak, netns_tag=net.tag, rate_mib_s=rate / MiB)
                rows[-1].update(wall_seconds=round(wall, 3))
                results += rows
                cluster.remove(order, name)
        finally:
            try:
                if cluster is not None:
                    cluster.close()
                    import ray

                    ray.shutdown()
            finally:
                net.down()
    return results


def measure(
    transfer: Transfer,
    case: str,
    hosts: dict[int, str],
    rates: dict[str, Rates],
    slow_host: str | None,
    reference: dict[str, float],
) -> list[dict[str, Any]]:
    """One row per target (its time against its own bound) and one for the whole cast."""
    size = int(transfer.size or 0)
    source_egress = rates[hosts[transfer.source_id]][0]
    targets = list(transfer.targets.select_related("node"))
    bounds = cast_bounds(size, source_egress, {t.pk: rates[hosts[t.node_id]] for t in targets})
    assert transfer.started_at is not None
    rows = []
    for target in targets:
        host = hosts[target.node_id]
        seconds = (target.finished_at - transfer.started_at).total_seconds() if target.finished_at else None
        bound = bounds.targets[target.pk] or 0.0
        ratio = round(seconds / bound, 3) if seconds is not None and bound else None
        if case == "equal" and ratio is not None:
            reference[host] = ratio
        rows.append(
            {
                "bench": "hetero-shaped",
                "case": case,
                "host": host + (" (slow)" if host == slow_host else ""),
                "seconds": None if seconds is None else round(seconds, 3),
                "bound_seconds": round(bound, 3),
                "ratio": ratio,
                "reference_ratio": reference.get(host),
                "in_mib_s": round(rates[host][1] / MiB, 2),
                "out_mib_s": round(rates[host][0] / MiB, 2),
                # What the planner will know of the node in the next case (Node.achieved_rate).
                "achieved_mib_s": round(target.node.achieved_rate / MiB, 2) if target.node.achieved_rate else None,
            }
        )
    fast = [r["ratio"] for r in rows if not r["host"].endswith("(slow)") and r["ratio"] is not None]
    seconds = max((r["seconds"] or 0.0 for r in rows), default=0.0)
    rows.append(
        {
            "bench": "hetero-shaped",
            "case": case,
            "host": "cast",
            "seconds": seconds,
            "bound_seconds": round(bounds.cast or 0.0, 3),
            "ratio": round(seconds / bounds.cast, 3) if bounds.cast else None,
            "reference_ratio": reference.get("cast"),
            "worst_fast_ratio": max(fast, default=None),
            "source_bytes_ratio": round(transfer.source_bytes_sent / size, 3) if size else None,
            "edges": (transfer.tree or {}).get("edges"),
        }
    )
    if case == "equal":
        reference["cast"] = rows[-1]["ratio"]
    return rows
