"""Why a Ray node counts as down: refused, unreachable and dead are told apart, with how long (no Ray)."""

from __future__ import annotations

import errno
import socket

import pytest

from bridge.connection import probe, probe_failure
from bridge.health import down_reason

ROW = {"address": "10.77.0.3", "node_manager_port": 40001, "alive": True, "death_reason": ""}
RID = "ab" * 28


def test_a_closed_port_is_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections to it are refused
        assert probe({"n": ("127.0.0.1", port)}) == {"n": ("refused", "connection refused")}


def test_a_listening_port_answers() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert probe({"n": s.getsockname()}) == {"n": ("", "")}


@pytest.mark.parametrize(
    ("exc", "kind", "says"),
    [
        (OSError(errno.EHOSTUNREACH, "No route to host"), "unreachable", "no route to host"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "unreachable", "network is unreachable"),
        (TimeoutError("timed out"), "unreachable", "no answer within 1 s"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "refused", "connection refused"),
        (OSError(errno.EACCES, "Permission denied"), "error", "Permission denied"),
    ],
)
def test_failures_are_classified_by_what_happened(exc: OSError, kind: str, says: str) -> None:
    got_kind, got_says = probe_failure(exc, 1.0)
    assert got_kind == kind and says in got_says


def test_an_unreachable_host_is_not_called_refused() -> None:
    reason = down_reason(RID, ROW, "unreachable", "no answer within 1 s", 6.2)
    assert "unreachable for 6 s" in reason and "10.77.0.3" in reason
    assert "refused" not in reason.replace("did not refuse", "") and "dead" not in reason


def test_a_refusing_raylet_is_refused_with_the_duration() -> None:
    reason = down_reason(RID, ROW, "refused", "connection refused", 5.0)
    assert "has refused connections for 5 s" in reason and "10.77.0.3:40001" in reason
    assert "unreachable" not in reason and "dead" not in reason


def test_a_node_ray_declared_dead_is_dead() -> None:
    reason = down_reason(RID, {**ROW, "alive": False, "death_reason": "health check failed"}, "", "", 0.0)
    assert "is dead (health check failed)" in reason
    assert "refused" not in reason and "unreachable" not in reason
