"""castray_bench runs each benchmark through the whole system, prints BENCH.md's keys and cleans up."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from nodes.models import Node
from transfers.models import Message, Transfer

pytestmark = [pytest.mark.ray, pytest.mark.django_db]
COMMON = {"bench", "case", "size_bytes", "seconds", "ratio", "peak_rss_mib", "ok"}


def run(*args: str) -> list[dict]:
    out = io.StringIO()
    call_command("castray_bench", *args, "--json", stdout=out)
    rows = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    assert rows and all(row["ok"] is True for row in rows), rows
    assert all(set(row) >= COMMON for row in rows)
    # Nothing the run made is left behind.
    assert not Node.objects.filter(name__startswith="bench-").exists()
    assert not Transfer.objects.exists() and not Message.objects.exists()
    return rows


def test_unicast(ray_session, storage) -> None:
    rows = run("unicast", "--size", "1MiB", "--size", "100KiB")
    assert [r["case"] for r in rows] == ["1MiB", "100KiB"]
    assert {"mb_s", "reference_mb_s"} <= set(rows[0]) and rows[0]["reference_mb_s"] > 0


def test_broadcast(ray_session, storage) -> None:
    rows = run("broadcast", "--size", "2MiB", "--nodes", "1,2", "--cap", "16")
    assert [r["case"] for r in rows] == ["n=1", "n=2"]
    for row in rows:
        assert {"efficiency", "source_bytes_ratio", "star_seconds", "star_efficiency", "rayget_seconds"} <= set(row)
        assert row["source_bytes_ratio"] == 1.0  # a chain: one copy from the source
    assert rows[1]["star_seconds"] > 0


def test_broadcast_uncapped_is_measured_against_ray_get(ray_session, storage) -> None:
    rows = run("broadcast", "--size", "1MiB", "--nodes", "2", "--cap", "0")
    # The row rounds all three to 3 decimals (±0.0005), and ray.get of 1 MiB takes ~10 ms:
    # rounding alone moves the quotient by up to ~5%, so the bound is derived, not guessed
    # (a CI run failed 0.104 against 0.099 ± 5% with ray.get at "0.010" s of a 0.101 s cast).
    rayget, seconds = rows[0]["rayget_seconds"], rows[0]["seconds"]
    rounding = 0.0005 + 0.0005 / seconds + rayget * 0.0005 / seconds**2
    assert rows[0]["efficiency"] == pytest.approx(rayget / seconds, abs=rounding + 0.001)


def test_hetero(ray_session, storage) -> None:
    rows = run("hetero", "--size", "1MiB", "--targets", "3", "--cap", "8")
    assert [r["case"] for r in rows] == ["equal", "slow-both-early", "slow-egress", "slow-at-end"]
    for row in rows:
        assert {"worst_fast_ratio", "slow_ratio", "bound_seconds", "source_bytes_ratio", "target_ratios"} <= set(row)
        assert len(row["target_ratios"]) == 3 and row["bound_seconds"] > 0
    assert rows[0]["source_bytes_ratio"] == 1.0  # equal caps: a chain, one copy from the source


def test_modes_and_messages(ray_session, storage) -> None:
    modes = run("modes", "--size", "1MiB")
    assert [r["case"] for r in modes] == ["tcp", "udp", "object_store"]
    messages = run("messages", "--count", "300", "--fan", "2")
    assert [r["case"] for r in messages] == ["unicast", "broadcast-2"]
    assert all(r["per_s"] > 0 for r in messages)


def test_api_reports_latency_and_constant_queries(db) -> None:
    from bridge.bench.api import bench_api

    rows = bench_api(nodes=6, transfers=120, requests=20)
    assert [r["case"] for r in rows] == ["status", "transfers"]
    for row in rows:
        assert set(row) >= COMMON | {"p50_ms", "p99_ms", "reference_p99_ms", "queries"}
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["transfers"] >= 120 and row["nodes"] >= 6
    # No N+1: a page of 50 casts (two targets each) and 6+ nodes cost a handful of queries.
    assert rows[0]["queries"] <= 10 and rows[1]["queries"] <= 6, rows
    # Everything the run made is gone.
    assert not Node.objects.filter(name__startswith="bench-api-").exists()
    assert not Transfer.objects.exists()
