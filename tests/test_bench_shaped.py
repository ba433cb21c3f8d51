"""`castray_bench hetero --links shaped` at a tiny size: its table, and nothing left behind.

The bench attaches to a Ray cluster of its own (namespace hosts), and one process attaches to
one Ray cluster, so it runs as `manage.py` in a process of its own with its own data directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster_fixtures import BASE_DIR, processes_naming
from tests.netns import unavailable

pytestmark = [pytest.mark.ray, pytest.mark.netns]
CASES = ["equal", "slow-both-early", "slow-egress", "slow-at-end"]
TARGETS = ("host-2",)  # one target: two raylets to start, the most of the test's time


def test_hetero_over_shaped_links_reports_each_host_against_its_bound(tmp_path: Path) -> None:
    why = unavailable()
    if why:
        assert os.environ.get("CI") != "true", f"network namespaces must work in CI: {why}"
        pytest.skip(why)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "RAY_ADDRESS", "RAY_AUTH_MODE")
    }
    env["CASTRAY_DATA_DIR"] = str(tmp_path / "data")
    ray_before = set(processes_naming("/tmp/crbench-"))
    done = subprocess.run(
        [sys.executable, "manage.py", "castray_bench", "hetero", "--links", "shaped"]
        + ["--size", "1MiB", "--targets", "1", "--cap", "32", "--json"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]

    # Per case: one row per target, then the cast's; every file verified.
    assert [r["case"] for r in rows] == [case for case in CASES for _ in range(len(TARGETS) + 1)]
    assert all(r["ok"] is True and r["bench"] == "hetero-shaped" for r in rows)
    for case in CASES:
        hosts = [r["host"] for r in rows if r["case"] == case]
        assert [h.removesuffix(" (slow)") for h in hosts] == [*TARGETS, "cast"]
        assert sum(h.endswith("(slow)") for h in hosts) == (case != "equal")
    for row in rows:
        assert row["seconds"] > 0 and row["bound_seconds"] > 0
        assert row["ratio"] == pytest.approx(row["seconds"] / row["bound_seconds"], rel=0.05)
        if row["host"] != "cast":
            # Measured over the link: near the 32 MiB/s configured, or a quarter of it.
            assert 4 < row["in_mib_s"] < 40 and 4 < row["out_mib_s"] < 40
        if row["case"] != "equal":
            assert row["reference_ratio"] is not None
    slow = next(r for r in rows if r["case"] == "slow-both-early" and r["host"].endswith("(slow)"))
    assert slow["in_mib_s"] < 12 and slow["out_mib_s"] < 12

    # Teardown: no namespace, link or Ray process of the run remains.
    tag = rows[0]["netns_tag"]
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    left += subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert tag not in left
    assert set(processes_naming("/tmp/crbench-")) <= ray_before
