"""`castray cast` and following casts (status, cancel, retry, history) against the real server:
the worker, the node actors and the files on disk."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.client.helpers import CLI, castray, castray_json, said, wait_for
from tests.helpers import sha256_of, write_random

pytestmark = pytest.mark.ray
MiB = 1024 * 1024


def test_cast_to_two_nodes_waits_and_prints_one_json_object(server, env: dict[str, str]) -> None:
    source = write_random(server.storage("node_1") / "cast" / "two.bin", 12 * MiB)

    code, body = castray_json("cast", "node_1:cast/two.bin", "--to", "node_2,node_3", "--wait", env=env)

    assert code == 0, body
    assert set(body) == {"id", "status", "size", "sha256", "duration_s", "targets"}
    assert body["status"] == "completed"
    assert body["size"] == 12 * MiB and body["sha256"] == sha256_of(source)
    assert body["duration_s"] > 0
    assert sorted(body["targets"], key=lambda t: t["node"]) == [
        {"node": "node_2", "status": "completed", "bytes_received": 12 * MiB, "error": ""},
        {"node": "node_3", "status": "completed", "bytes_received": 12 * MiB, "error": ""},
    ]
    for node in ("node_2", "node_3"):
        assert (server.storage(node) / "cast" / "two.bin").read_bytes() == source.read_bytes()

    # The same cast again: both targets hold it, the server skips them, nothing moves.
    code, again = castray_json("retry", str(body["id"]), "--wait", env=env)
    assert code == 0 and again["id"] != body["id"]
    assert {t["status"] for t in again["targets"]} == {"skipped"}
    assert all(t["bytes_received"] == 0 for t in again["targets"])

    code, shown = castray_json("status", str(body["id"]), env=env)
    assert code == 0 and shown["status"] == "completed" and shown["cast"]["source"] == "node_1"
    code, listed = castray_json("history", "--source", "node_1", "--search", "two.bin", env=env)
    assert code == 0 and [c["id"] for c in listed] == [again["id"], body["id"]]


def test_a_cast_to_a_disabled_node_exits_1_with_its_reason(server, env: dict[str, str]) -> None:
    write_random(server.storage("node_1") / "cast" / "disabled.bin", MiB)
    status, _ = server.as_admin("POST", "/api/v1/nodes/node_3/disable/")
    assert status == 200
    try:
        result = castray("cast", "node_1:cast/disabled.bin", "--to", "node_2,node_3", "--wait", env=env)
        assert result.returncode == 1, result
        assert "target node(s) node_3 are disabled" in said(result.stderr)
        assert not (server.storage("node_2") / "cast" / "disabled.bin").exists()
    finally:
        server.as_admin("POST", "/api/v1/nodes/node_3/enable/")
        wait_for("node_3 online", lambda: server.nodes()["node_3"]["status"] == "online", timeout=60)


def test_a_node_disabled_mid_cast_ends_it_partial_with_the_reason_per_target(server, env: dict[str, str]) -> None:
    size = 24 * MiB
    source = write_random(server.storage("node_1") / "cast" / "cut.bin", size)
    assert server.as_admin("PATCH", "/api/v1/nodes/node_3/", {"ingress_cap": 2 * MiB})[0] == 200
    time.sleep(1.5)  # the worker hands the new cap to the actors
    try:
        waiting = subprocess.Popen(
            [*CLI, "cast", "node_1:cast/cut.bin", "--to", "node_2,node_3", "--fan-out", "2", "--wait", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        def node_3_receiving() -> bool:
            casts = server.get("/api/v1/transfers/?search=cut.bin")["results"]
            return bool(casts) and any(
                r["node"] == "node_3" and r["status"] == "receiving" and r["bytes_done"] > 0
                for r in casts[0]["recipients"]
            )

        wait_for("node_3 receiving", node_3_receiving, timeout=60)
        assert server.as_admin("POST", "/api/v1/nodes/node_3/disable/")[0] == 200
        out, err = waiting.communicate(timeout=120)
        assert waiting.returncode == 1, (out, err)
        body = json.loads(out)
        assert body["status"] == "partial"
        by_node = {t["node"]: t for t in body["targets"]}
        assert by_node["node_2"] == {"node": "node_2", "status": "completed", "bytes_received": size, "error": ""}
        assert by_node["node_3"]["status"] == "failed" and by_node["node_3"]["error"]
        assert (server.storage("node_2") / "cast" / "cut.bin").read_bytes() == source.read_bytes()
        assert not (server.storage("node_3") / "cast" / "cut.bin").exists()
    finally:
        server.as_admin("PATCH", "/api/v1/nodes/node_3/", {"ingress_cap": None})
        server.as_admin("POST", "/api/v1/nodes/node_3/enable/")
        wait_for("node_3 online", lambda: server.nodes()["node_3"]["status"] == "online", timeout=60)


def test_min_ready_returns_while_a_capped_target_still_receives(server, env: dict[str, str]) -> None:
    size = 24 * MiB
    source = write_random(server.storage("node_1") / "cast" / "slow.bin", size)
    status, body = server.as_admin("PATCH", "/api/v1/nodes/node_3/", {"ingress_cap": 2 * MiB})
    assert status == 200 and body["ingress_cap"] == 2 * MiB
    time.sleep(1.5)  # a heartbeat or two: the worker hands the new cap to the actors
    cast_id = None
    try:
        # A star (fan-out 2): node_2 has its copy at once, node_3 takes ~12 s at 2 MiB/s.
        started = time.monotonic()
        code, body = castray_json(
            "cast", "node_1:cast/slow.bin", "--to", "node_2,node_3", "--fan-out", "2", "--wait", "--min-ready", "1",
            env=env,
        )  # fmt: skip
        took = time.monotonic() - started
        assert code == 0, body
        cast_id = body["id"]
        by_node = {t["node"]: t for t in body["targets"]}
        assert by_node["node_2"]["status"] == "completed"
        assert by_node["node_3"]["status"] in ("pending", "receiving")
        assert body["status"] == "running" and took < 10, took
        assert (server.storage("node_2") / "cast" / "slow.bin").read_bytes() == source.read_bytes()
        # From the server's side too: node_3 is still receiving, its file not there yet.
        status, detail = server.as_admin("GET", f"/api/v1/transfers/{cast_id}/")
        node_3 = next(r for r in detail["recipients"] if r["node"] == "node_3")
        assert node_3["status"] in ("pending", "receiving") and node_3["bytes_done"] < size
        assert not (server.storage("node_3") / "cast" / "slow.bin").exists()

        # A watcher with a deadline gives up with exit 3; the cast goes on.
        code, body = castray_json("status", str(cast_id), "--watch", "--timeout", "1", env=env)
        assert code == 3 and body["status"] == "running"

        # Another watcher follows it live; cancelling ends it and the watcher exits 1 with the reason.
        watcher = subprocess.Popen(
            [*CLI, "status", str(cast_id), "--watch"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2)
        cancelled = castray("cancel", str(cast_id), env=env)
        assert cancelled.returncode == 0, cancelled.stderr
        out, err = watcher.communicate(timeout=60)
        assert watcher.returncode == 1, (out, err)
        assert "cancelled" in out and "node_3" in out
        final = server.as_admin("GET", f"/api/v1/transfers/{cast_id}/")[1]
        assert final["status"] == "cancelled"
        assert {r["node"]: r["status"] for r in final["recipients"]} == {"node_2": "completed", "node_3": "cancelled"}
    finally:
        server.as_admin("PATCH", "/api/v1/nodes/node_3/", {"ingress_cap": None})
        if cast_id is not None:
            server.as_admin("POST", f"/api/v1/transfers/{cast_id}/cancel/")


def test_a_local_file_goes_up_to_a_node_first_then_out(server, env: dict[str, str], tmp_path: Path) -> None:
    local = write_random(tmp_path / "local.bin", 3 * MiB)

    code, body = castray_json(
        "cast", str(local), "--to", "node_3", "--via", "node_2", "--dest", "up/local.bin", "--wait", env=env
    )

    assert code == 0 and body["status"] == "completed", body
    assert (server.storage("node_2") / "up" / "local.bin").read_bytes() == local.read_bytes()
    assert (server.storage("node_3") / "up" / "local.bin").read_bytes() == local.read_bytes()


def test_a_url_the_server_refuses_exits_2_with_the_servers_reason(server, env: dict[str, str]) -> None:
    result = castray("cast", "https://169.254.169.254/latest/meta-data", "--to", "node_2", "--wait", env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "169.254.169.254" in said(result.stderr)
    assert "no origin support" not in said(result.stderr)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["cast", "node_1:x.bin"], "Missing option '--to'"),
        (["cast", "node_1:x.bin", "--to", "node_2", "--mode", "carrier-pigeon"], "--mode"),
        (["cast", "node_1:x.bin", "--to", "node_2", "--fan-out", "99"], "--fan-out"),
        (["cast", "node_1:x.bin", "--to", "node_2,,node_3"], "--to"),
        (["cast", "node_1:x.bin", "--to", "group:"], "--to"),
        (["cast", "no-such-local-file", "--to", "node_2"], "SOURCE"),
        (["cast", "node_1:x.bin", "--to", "node_2", "--min-ready", "0"], "--min-ready"),
        (["status", "not-a-number"], "ID"),
        (["send", "--to", "all"], "TEXT"),
        (["frobnicate"], "No such command"),
    ],
)
def test_bad_arguments_exit_2_with_a_usage_message(server, env: dict[str, str], args: list[str], says: str) -> None:
    result = castray(*args, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Usage: " in said(result.stderr) and says in said(result.stderr)


def test_a_directory_is_cast_whole_in_one_cast_under_the_new_name(server, env: dict[str, str]) -> None:
    root = server.storage("node_1") / "dataset"
    files = {name: write_random(root / name, 200_000 + i) for i, name in enumerate(["a.bin", "b.bin", "sub/c.bin"])}

    code, body = castray_json("cast", "node_1:dataset", "--to", "node_2", "--dest", "copies/dataset", "--wait", env=env)

    assert code == 0, body
    assert body["status"] == "completed" and isinstance(body["id"], int) and "casts" not in body
    assert body["size"] == sum(p.stat().st_size for p in files.values())
    assert [(t["node"], t["status"], t["error"]) for t in body["targets"]] == [("node_2", "completed", "")]
    status, detail = server.as_admin("GET", f"/api/v1/transfers/{body['id']}/")
    assert status == 200 and detail["is_directory"] is True and detail["files"] == 3
    for name, path in files.items():
        assert (server.storage("node_2") / "copies" / "dataset" / name).read_bytes() == path.read_bytes()


def test_groups_status_and_a_cast_to_a_group(server, env: dict[str, str]) -> None:
    status, _ = server.as_admin("POST", "/api/v1/groups/", {"name": "pair", "nodes": ["node_2", "node_3"]})
    assert status == 201
    code, groups = castray_json("groups", env=env)
    assert code == 0 and {"name": "pair", "nodes": ["node_2", "node_3"], "description": ""} in groups

    source = write_random(server.storage("node_1") / "cast" / "grouped.bin", 2 * MiB)
    code, body = castray_json("cast", "node_1:cast/grouped.bin", "--to", "group:pair", "--wait", env=env)
    assert code == 0 and body["status"] == "completed"
    assert sorted(t["node"] for t in body["targets"]) == ["node_2", "node_3"]
    assert (server.storage("node_3") / "cast" / "grouped.bin").read_bytes() == source.read_bytes()

    code, cluster = castray_json("status", env=env)
    assert code == 0
    assert [c["status"] for c in cluster["clusters"]] == ["connected"]
    assert {n["name"]: n["status"] for n in cluster["nodes"]}["node_1"] == "online"
    assert cluster["active_casts"] == [] or all(c["status"] in ("queued", "running") for c in cluster["active_casts"])

    # The tables people read name the same things.
    result = castray("nodes", env=env)
    assert result.returncode == 0 and "node_1" in result.stdout and "online" in result.stdout
    result = castray("status", env=env)
    assert result.returncode == 0 and "Ray cluster" in said(result.stdout) and "connected" in result.stdout
