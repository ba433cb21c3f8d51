from __future__ import annotations

import json
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from bridge.bench import casts as bench_casts
from castray_site.env import parse_size

COLUMNS: dict[str, list[str]] = {
    "unicast": ["median_ratio", "mb_s", "reference_mb_s"],
    "hetero": ["worst_fast_ratio", "slow_ratio", "bound_seconds", "source_bytes_ratio", "wall_seconds"],
    "hetero-shaped": [
        "host",
        "bound_seconds",
        "reference_ratio",
        "in_mib_s",
        "out_mib_s",
        "achieved_mib_s",
        "worst_fast_ratio",
        "source_bytes_ratio",
    ],
    "broadcast": [
        "efficiency",
        "cast_seconds",
        "source_bytes_ratio",
        "star_seconds",
        "star_efficiency",
        "rayget_seconds",
    ],
    "modes": ["mb_s", "source_bytes_ratio", "private_mib", "object_store_mapped_mib"],
    "messages": ["per_s", "deliveries_per_s", "reference_per_s"],
    "api": ["p50_ms", "p99_ms", "reference_p99_ms", "queries"],
    "tree": ["files", "mb_s", "files_per_s", "reference_mb_s", "bytes_moved_ratio"],
    "load": ["p50_ms", "p99_ms", "reference_p50_ms", "reference_p99_ms", "feed_lag_s", "clients_with_event"],
}
TREE_CASES = ("small", "shards", "recast-one-changed")


def size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


class Command(BaseCommand):
    help = "Benchmark CastRay through the whole system against a reference measured in the same run."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="bench", required=True)
        unicast = sub.add_parser("unicast", help="one file between two nodes vs a sendfile program")
        unicast.add_argument("--size", action="append", default=None, help="repeatable; default 1GiB")
        unicast.add_argument("--repeat", type=int, default=1, help="alternate runs, keep the best of each")
        broadcast = sub.add_parser("broadcast", help="one file to N capped nodes: tree vs star vs ray.get")
        broadcast.add_argument("--size", default="256MiB")
        broadcast.add_argument("--nodes", default="1,2,4,8")
        broadcast.add_argument(
            "--cap", type=float, default=32, help="MiB/s on every node's egress and ingress; 0: uncapped"
        )
        hetero = sub.add_parser("hetero", help="one slow target among fast ones, against each one's lower bound")
        hetero.add_argument("--size", default=None, help="default 64MiB; 16MiB with --links shaped")
        hetero.add_argument("--targets", type=int, default=None, help="default 7; 3 with --links shaped")
        hetero.add_argument(
            "--cap", type=float, default=16, help="MiB/s of every node (or link) but the slow one (C/4)"
        )
        hetero.add_argument(
            "--links",
            choices=("caps", "shaped"),
            default="caps",
            help="caps: CastRay's own caps; shaped: hosts as network namespaces, tbf on their links, no caps",
        )
        modes = sub.add_parser("modes", help="tcp, udp and object_store on the same file")
        modes.add_argument("--size", default="256MiB")
        modes.add_argument("--targets", type=int, default=1)
        messages = sub.add_parser("messages", help="messages per second, unicast and broadcast")
        messages.add_argument("--count", type=int, default=10000)
        messages.add_argument("--fan", type=int, default=8)
        api = sub.add_parser("api", help="p50/p99 of /api/status and the transfer list with a full history")
        api.add_argument("--nodes", type=int, default=50)
        api.add_argument("--transfers", type=int, default=10000)
        api.add_argument("--requests", type=int, default=300)
        tree = sub.add_parser("tree", help="directory casts vs a tar stream over loopback; a re-cast after one change")
        tree.add_argument("--case", action="append", choices=TREE_CASES, help="repeatable; default all")
        tree.add_argument("--repeat", type=int, default=1, help="alternate runs, keep the best of each")
        load = sub.add_parser("load", help="a real server: API latency and the /ws feed during a broadcast")
        load.add_argument("--clients", type=int, default=500, help="WebSocket clients on /ws")
        load.add_argument("--rps", type=float, default=50, help="API requests per second")
        load.add_argument("--size", default="256MiB")
        for p in (unicast, broadcast, hetero, modes, messages, api, tree, load):
            p.add_argument("--json", action="store_true", help="one JSON object per result per line")

    def handle(self, *args: Any, **options: Any) -> None:
        bench = options["bench"]
        # A fresh data directory works too: the bench needs the tables, not the demo nodes.
        call_command("migrate", verbosity=0, interactive=False)
        if bench == "unicast":
            results = bench_casts.bench_unicast(
                sizes=[size(s) for s in options["size"] or ["1GiB"]], repeat=max(1, options["repeat"])
            )
        elif bench == "broadcast":
            try:
                nodes = [int(n) for n in options["nodes"].split(",")]
            except ValueError:
                raise CommandError("--nodes takes numbers separated by commas, e.g. 1,2,4,8") from None
            results = bench_casts.bench_broadcast(
                size=size(options["size"]), nodes=nodes, cap=int(options["cap"] * 1024 * 1024)
            )
        elif bench == "hetero" and options["links"] == "shaped":
            from bridge.bench.shaped import bench_hetero_shaped

            try:
                results = bench_hetero_shaped(
                    size=size(options["size"] or "16MiB"),
                    targets=options["targets"] or 3,
                    rate=int(options["cap"] * 1024 * 1024),
                )
            except RuntimeError as exc:
                raise CommandError(str(exc)) from None
            bench = "hetero-shaped"
        elif bench == "hetero":
            from bridge.bench.hetero import bench_hetero

            results = bench_hetero(
                size=size(options["size"] or "64MiB"),
                targets=options["targets"] or 7,
                cap=int(options["cap"] * 1024 * 1024),
            )
        elif bench == "modes":
            results = bench_casts.bench_modes(size=size(options["size"]), targets=options["targets"])
        elif bench == "tree":
            from bridge.bench.trees import bench_tree

            results = bench_tree(options["case"] or list(TREE_CASES), repeat=max(1, options["repeat"]))
        elif bench == "messages":
            results = bench_casts.bench_messages(count=options["count"], fan=options["fan"])
        elif bench == "load":
            from bridge.bench.load import bench_load

            if not 1 <= options["clients"] <= 2000 or not 0 < options["rps"] <= 500:
                raise CommandError("--clients takes 1 to 2000 and --rps more than 0, at most 500")
            results = bench_load(clients=options["clients"], rps=options["rps"], size=size(options["size"]))
        else:
            from bridge.bench.api import bench_api

            results = bench_api(nodes=options["nodes"], transfers=options["transfers"], requests=options["requests"])
        if options["json"]:
            for row in results:
                self.stdout.write(json.dumps(row))
        else:
            self.print_table(bench, results)
        if not all(row["ok"] for row in results):
            what = "a delivered file or message did not verify"
            if bench == "api":
                what = "a request failed or missed the 50 ms p99 target"
            elif bench == "load":
                what = "the cast, a request or a client failed, or a target was missed (p99, feed lag, memory)"
            raise CommandError(f"{what}; see the ok column")

    def print_table(self, bench: str, results: list[dict[str, Any]]) -> None:
        columns = ["case", "size_bytes", "seconds", "ratio", *COLUMNS[bench], "peak_rss_mib", "ok"]
        rows = [[str(row.get(c, "")) for c in columns] for row in results]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
        self.stdout.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
        for row in rows:
            self.stdout.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
        if bench == "load":
            self.stdout.write("seconds: from the API reporting the cast complete to the last client having it.")
        elif bench == "api":
            self.stdout.write("ratio: p99 of GET /health (the same stack) / p99 of the endpoint; ok: p99 < 50 ms.")
        elif bench.startswith("hetero"):
            self.stdout.write(
                "ratio: seconds / lower bound (1.0 is the limit of the links; lower is better); "
                "reference_ratio: the same in the equal case of this run."
            )
        else:
            self.stdout.write("MB/s = 10^6 bytes per second; ratio: this system / its reference (higher is better).")
