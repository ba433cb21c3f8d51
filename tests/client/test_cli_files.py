"""`castray put`, `get` (with resume), `ls` and `rm` against the real server's storage."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.client.helpers import CLI, StallingProxy, castray, castray_json, said, wait_for
from tests.helpers import sha256_of, write_random

pytestmark = pytest.mark.ray
MiB = 1024 * 1024


def test_put_then_get_64_mib_round_trips_and_an_interrupted_get_resumes_with_range(
    server, env: dict[str, str], tmp_path: Path
) -> None:
    local = write_random(tmp_path / "up" / "big.bin", 64 * MiB)

    result = castray("put", "node_1", str(local), "files/big.bin", env=env)
    assert result.returncode == 0, result.stderr
    stored = server.storage("node_1") / "files" / "big.bin"
    assert stored.read_bytes() == local.read_bytes()
    assert sha256_of(local) in result.stdout

    code, listed = castray_json("ls", "node_1", "files", env=env)
    assert code == 0 and [(f["name"], f["size"], f["sha256"]) for f in listed] == [
        ("files/big.bin", 64 * MiB, sha256_of(local))
    ]

    # A whole download.
    result = castray("get", "node_1", "files/big.bin", str(tmp_path / "whole.bin"), env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "whole.bin").read_bytes() == local.read_bytes()
    assert "verified" in result.stdout

    # A download through a network that hangs half-way, then Ctrl-C: the bytes so far stay in .part.
    proxy = StallingProxy(server.port, budget=32 * MiB)
    target = tmp_path / "resumed.bin"
    part = tmp_path / "resumed.bin.part"
    try:
        stalled = subprocess.Popen(
            [*CLI, "--url", proxy.url, "get", "node_1", "files/big.bin", str(target)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # Ctrl-C as a terminal delivers it: a suite started in the background (`cmd &`,
            # nohup) ignores SIGINT, the child would inherit that, and Python keeps it ignored.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        held = wait_for("half the file", lambda: part.exists() and part.stat().st_size >= 31 * MiB, timeout=60)
        assert held
        stalled.send_signal(signal.SIGINT)
        _, err = stalled.communicate(timeout=30)
    finally:
        proxy.close()
    assert stalled.returncode == 130, err
    assert "run the command again to resume" in said(err)
    assert not target.exists()
    kept = part.stat().st_size
    assert 16 * MiB < kept < 64 * MiB

    before = len(server.range_requests())
    code, body = castray_json("get", "node_1", "files/big.bin", str(target), env=env)
    assert code == 0, body
    assert body["resumed_from"] == kept and body["verified"] is True and body["size"] == 64 * MiB
    assert target.read_bytes() == local.read_bytes() and not part.exists()
    # The server was asked for the rest only, and answered 206 with that range.
    asked = server.range_requests()[before:]
    assert {
        "method": "GET",
        "path": "/api/v1/nodes/node_1/files/files/big.bin",
        "range": f"bytes={kept}-",
        "status": 206,
        "content_range": f"bytes {kept}-{64 * MiB - 1}/{64 * MiB}",
    } in asked
    assert not [r for r in asked if not r["range"]]  # and never for the whole file again

    result = castray("rm", "node_1", "files/big.bin", env=env)
    assert result.returncode == 0 and not stored.exists()
    result = castray("get", "node_1", "files/big.bin", str(tmp_path / "gone.bin"), env=env)
    assert result.returncode == 1 and "404" in said(result.stderr) and "does not exist" in said(result.stderr)
    assert not (tmp_path / "gone.bin.part").exists()


def test_put_refuses_to_replace_a_file_unless_told(server, env: dict[str, str], tmp_path: Path) -> None:
    first = write_random(tmp_path / "a.bin", 1000)
    second = write_random(tmp_path / "b.bin", 2000)
    assert castray("put", "node_2", str(first), "same.bin", env=env).returncode == 0

    result = castray("put", "node_2", str(second), "same.bin", env=env)
    assert result.returncode == 1 and "409" in said(result.stderr)

    result = castray("put", "node_2", str(second), "same.bin", "--overwrite", env=env)
    assert result.returncode == 0
    assert (server.storage("node_2") / "same.bin").read_bytes() == second.read_bytes()
