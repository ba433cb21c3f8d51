"""The Python API (`castray_client.Client`) against the real server, in this process."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from castray_client import Cast, CastRayError, Client, Node, WaitTimeout

from tests.client.helpers import FlakyProxy
from tests.helpers import write_random
from tests.servers import free_port

pytestmark = pytest.mark.ray
MiB = 1024 * 1024


@pytest.fixture
def client(server) -> Iterator[Client]:
    with Client(server.url, server.token, timeout=30) as c:
        yield c


@pytest.fixture
def capped_node_3(server) -> Iterator[None]:
    # node_3 receives at 2 MiB/s: a cast to it lasts long enough to watch.
    assert server.as_admin("PATCH", "/api/v1/nodes/node_3/", {"ingress_cap": 2 * MiB})[0] == 200
    time.sleep(1.5)  # the worker hands the new cap to the actors
    yield
    server.as_admin("PATCH", "/api/v1/nodes/node_3/", {"ingress_cap": None})


def test_methods_return_dataclasses_and_errors_carry_the_servers_message(client: Client) -> None:
    nodes = client.nodes()
    assert all(isinstance(n, Node) for n in nodes)
    assert {"node_1", "node_2", "node_3"} <= {n.name for n in nodes if n.online}

    with pytest.raises(CastRayError) as caught:
        client.node("no-such-node")
    assert caught.value.status == 404 and caught.value.message == "No Node matches the given query."

    with pytest.raises(CastRayError) as caught:
        client.cast("node_1", "../etc/passwd", to="node_2")
    assert caught.value.status == 400 and "'..'" in caught.value.message


def test_watch_yields_progress_live_and_wait_stops_at_min_ready(server, client: Client, capped_node_3) -> None:
    write_random(server.storage("node_1") / "api" / "watched.bin", 8 * MiB)
    cast = client.cast("node_1", "api/watched.bin", to="node_2,node_3", fan_out=2)
    # The worker may claim it before the API answers: queued or already running.
    assert isinstance(cast, Cast) and cast.status in ("queued", "running")

    ready = cast.wait(timeout=60, min_ready=1)
    assert [t.node for t in ready.ready_targets] == ["node_2"] and not ready.final

    seen = []
    for state in ready.watch(timeout=60):
        seen.append(next(t.bytes_done for t in state.targets if t.node == "node_3"))
    assert state.final and state.status == "completed" and state.sha256 and state.duration
    assert len(set(seen)) >= 3 and seen == sorted(seen)  # several steps of progress, never backwards
    assert seen[-1] == 8 * MiB


def test_watch_falls_back_to_polling_when_the_socket_cannot_open(
    server, client: Client, capped_node_3, monkeypatch: pytest.MonkeyPatch
) -> None:
    import castray_client.watch

    # Nothing listens there: as behind a proxy that does not pass WebSockets.
    monkeypatch.setattr(castray_client.watch, "ws_url", lambda c, cast_id: "ws://127.0.0.1:9/ws/transfers/0")
    write_random(server.storage("node_1") / "api" / "polled.bin", 4 * MiB)
    cast = client.cast("node_1", "api/polled.bin", to="node_3")
    with pytest.raises(WaitTimeout):
        cast.wait(timeout=0.5)
    done = cast.wait(timeout=60)
    assert done.status == "completed" and done.targets[0].bytes_received == 4 * MiB


def test_reads_are_retried_after_a_dropped_connection(server) -> None:
    proxy = FlakyProxy(server.port, drops=2)
    try:
        with Client(proxy.url, server.token, backoff=0.05) as flaky:
            assert {"node_1", "node_2"} <= {n.name for n in flaky.nodes()}
        assert proxy.dropped == 2
    finally:
        proxy.close()
    # Nobody listens: each try fails to connect, and after the retries the error says so.
    with Client(f"http://127.0.0.1:{free_port()}", server.token, retries=1, backoff=0.05) as gone:
        started = time.monotonic()
        with pytest.raises(CastRayError) as caught:
            gone.nodes()
    assert caught.value.status is None and "cannot reach CastRay" in str(caught.value)
    assert time.monotonic() - started >= 0.05  # it waited before trying again
