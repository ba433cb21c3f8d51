"""Stopping `manage.py castray_up` (SIGTERM, as a service manager or Ctrl-C does) ends the
server, its worker, the node actors and the local Ray it started: promptly, without Ray's
stack dump, and with no process of its tree left behind."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.servers import _castray_up_process

pytestmark = pytest.mark.ray


def _stat(pid: int) -> tuple[int, int, int, str, str] | None:
    """(ppid, pgid, session, state, start time) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return int(fields[1]), int(fields[2]), int(fields[3]), fields[0], fields[19]


def process_tree(root: int) -> dict[int, str]:
    """Every process descended from `root`, or in its session or process group: pid -> start time."""
    table = {pid: st for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()) if (st := _stat(pid))}
    session, pgid = table[root][2], table[root][1]
    tree = {pid for pid, st in table.items() if st[2] == session or st[1] == pgid} | {root}
    grew = True
    while grew:
        more = {pid for pid, st in table.items() if st[0] in tree} - tree
        tree |= more
        grew = bool(more)
    return {pid: table[pid][4] for pid in tree}


def alive(pid: int, started: str) -> bool:
    st = _stat(pid)
    return st is not None and st[4] == started and st[3] != "Z"  # a zombie has ended


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_sigterm_ends_the_server_its_actors_and_its_local_ray_within_10s(tmp_path: Path) -> None:
    env = {
        "RAY_ADDRESS": "",  # the one-machine default: castray_up starts its own local Ray
        "CASTRAY_RAY_SHIP_CODE": "0",
        "CASTRAY_WORKER_IN_PROCESS": "1",
        "CASTRAY_HEARTBEAT_SECONDS": "0.5",
    }
    with _castray_up_process(tmp_path, env, until=lambda body: body["ready"]) as server:
        assert server.process is not None
        pid = server.process.pid
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            tree = process_tree(pid)
            if sum("CastNode" in cmdline(p) for p in tree) >= 3:  # the demo nodes' actors
                break
            time.sleep(0.3)
        else:
            raise AssertionError("the node actors never started:\n" + server.log.read_text())
        stopped_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=10)
        while time.monotonic() - stopped_at < 10 and any(alive(p, s) for p, s in tree.items()):
            time.sleep(0.1)
        left = {p: cmdline(p) for p, s in tree.items() if alive(p, s)}
        for p in left:  # do not leak them into the rest of the run
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
    output = server.log.read_text()
    assert "Aborted" not in output and "*** SIG" not in output and "Stack trace" not in output, output[-3000:]
    assert left == {}, f"still running 10 s after SIGTERM: {left}"
