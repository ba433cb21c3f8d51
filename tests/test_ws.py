"""The live feed through the real ASGI application: who may connect, and what they receive.

Alice is an ordinary user with a session and an API token; anyone else is anonymous.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client
from rest_framework.authtoken.models import Token

from castray_site.asgi import application
from nodes.models import Node
from nodes.services import node_create, node_set_enabled
from transfers import services
from transfers.events import MIN_PROGRESS_INTERVAL
from transfers.models import Target, Transfer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]
BASE_DIR = Path(__file__).resolve().parent.parent
SAME_SITE = [(b"origin", b"http://testserver")]
DASHBOARD = "http://dash.example.org:3000"


@pytest.fixture(autouse=True)
def private_layer(settings) -> None:  # type: ignore[no-untyped-def]
    # On Redis, a prefix of its own keeps other test runs' events out of this one.
    if settings.REDIS_URL:
        layers = {"default": {**settings.CHANNEL_LAYERS["default"]}}
        layers["default"]["CONFIG"] = {**layers["default"]["CONFIG"], "prefix": f"castray-test-{os.getpid()}"}
        settings.CHANNEL_LAYERS = layers


@pytest_asyncio.fixture(autouse=True)
async def close_thread_connections() -> AsyncIterator[None]:
    yield
    # The ORM helpers ran in asgiref's worker thread; its connection would keep the test
    # database from being dropped on PostgreSQL.
    await database_sync_to_async(connections.close_all)()


@pytest.fixture
def token(alice: User) -> str:
    return Token.objects.create(user=alice).key


@pytest.fixture
def session_cookie(alice: User) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(alice)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


@pytest.fixture
def cast(storage: Path) -> Transfer:
    """A queued cast of a.bin from node_1 to node_2 and node_3, all online."""
    made = [node_create(name=f"node_{i}") for i in (1, 2, 3)]
    Node.objects.update(status=Node.Status.ONLINE)
    return services.transfer_create(source=made[0], file_name="a.bin", targets=made[1:])


async def connect(path: str, headers: list[tuple[bytes, bytes]] | None = None, **kw: Any) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, headers=headers if headers is not None else SAME_SITE, **kw)
    connected, detail = await communicator.connect(timeout=5)
    communicator.result = (connected, detail)  # type: ignore[attr-defined]
    return communicator


async def close_code(communicator: WebsocketCommunicator) -> int | None:
    """The code of a refusal: the consumer accepts, then closes (a close before accepting
    would reach real clients as an HTTP 403 without the code)."""
    assert communicator.result[0] is True, communicator.result  # type: ignore[attr-defined]
    message = await communicator.receive_output(timeout=5)
    assert message["type"] == "websocket.close", message
    return message.get("code")


async def receive(communicator: WebsocketCommunicator, kind: str, **match: Any) -> dict[str, Any]:
    """The next message of type `kind` whose data has the `match` values, skipping others."""
    deadline = time.monotonic() + 10
    while True:
        message = await communicator.receive_json_from(timeout=max(0.1, deadline - time.monotonic()))
        data = message.get("data", message)
        if message["type"] == kind and all(data.get(k) == v for k, v in match.items()):
            return message


async def receive_within(communicator: WebsocketCommunicator, kind: str, within: float) -> dict[str, Any]:
    """The next message of type `kind`, which must come within `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no {kind} within {within} s"
        message = await communicator.receive_json_from(timeout=left)
        if message["type"] == kind:
            return message


async def test_anonymous_connections_are_refused_with_4401() -> None:
    for path in ["/ws", "/ws/transfers/1", "/ws/nodes/1"]:
        communicator = await connect(path)
        assert await close_code(communicator) == 4401, path


async def test_a_bad_token_is_refused(alice: User) -> None:
    communicator = await connect("/ws?token=not-a-token")
    assert await close_code(communicator) == 4401


async def test_a_foreign_origin_is_refused_even_with_a_session(session_cookie) -> None:
    communicator = await connect("/ws", [(b"origin", b"http://evil.example.com"), session_cookie])
    assert communicator.result[0] is False


async def test_a_session_on_the_same_site_is_accepted_with_the_current_state(session_cookie, storage) -> None:
    await database_sync_to_async(node_create)(name="node_1")
    communicator = await connect("/ws", [*SAME_SITE, session_cookie])
    assert communicator.result == (True, None)
    message = await communicator.receive_json_from(timeout=5)
    assert message["type"] == "status_update"
    assert message["data"]["total_nodes"] == 1
    assert message["data"]["node_statuses"][0]["node_id"] == "node_1"
    assert message["data"]["node_ports"] == {"node_1": None}
    await communicator.disconnect()


async def test_a_token_in_the_query_string_is_accepted(token: str) -> None:
    communicator = await connect(f"/ws?token={token}", headers=[])
    assert communicator.result == (True, None)
    assert (await communicator.receive_json_from(timeout=5))["type"] == "status_update"
    await communicator.disconnect()


async def test_a_token_as_a_subprotocol_is_accepted_and_the_protocol_answered(token: str) -> None:
    communicator = await connect("/ws", subprotocols=["castray.v1", f"castray.token.{token}"])
    assert communicator.result == (True, "castray.v1")
    await communicator.disconnect()


async def test_a_dashboard_origin_needs_a_token_not_a_session(settings, token: str, session_cookie) -> None:
    # Dashboards from CASTRAY_CORS_ORIGINS may connect with a token; a page there must not
    # be able to use a visitor's CastRay login.
    settings.CORS_ALLOWED_ORIGINS = [DASHBOARD]
    origin = (b"origin", DASHBOARD.encode())
    refused = await connect("/ws", [origin, session_cookie])
    assert await close_code(refused) == 4401
    accepted = await connect(f"/ws?token={token}", [origin])
    assert accepted.result == (True, None)
    await accepted.disconnect()


async def test_the_feed_relays_a_cast_from_queued_to_completed(token: str, cast: Transfer) -> None:
    feed = await connect(f"/ws?token={token}")
    page = await connect(f"/ws/transfers/{cast.pk}?token={token}")
    assert feed.result[0] and page.result[0]

    snapshot = await receive(feed, "status_update")
    assert [t["id"] for t in snapshot["data"]["active_casts"]] == [cast.pk]
    assert snapshot["data"]["active_nodes"] == 3
    first = await receive(page, "transfer.update")
    assert first["status"] == "queued" and {t["node"] for t in first["targets"]} == {"node_2", "node_3"}

    # The worker's steps, through the same services it calls.
    claimed = await database_sync_to_async(services.transfer_claim)(worker_id="w", lease_seconds=30, limit=1)
    transfer = claimed[0]
    await database_sync_to_async(services.transfer_start)(
        transfer=transfer, size=1000, sha256="0" * 64, tree={}, chunk_size=65536
    )
    await asyncio.sleep(MIN_PROGRESS_INTERVAL)
    ids = {t.node.name: t.pk for t in await database_sync_to_async(list)(transfer.targets.select_related("node"))}
    now = time.time()
    rows = {pk: {"status": "receiving", "bytes_done": 400, "started": now - 1, "updated": now} for pk in ids.values()}
    await database_sync_to_async(services.target_progress)(transfer=transfer, rows=rows)

    activity = await receive(feed, "transfer_activity", status="running")
    assert activity["data"]["file_name"] == "a.bin" and activity["data"]["source"] == "node_1"
    progress = await receive(page, "transfer.update", status="running")
    while {t["bytes_done"] for t in progress["targets"]} != {400}:
        progress = await receive(page, "transfer.update", status="running")
    assert progress["size"] == 1000
    assert all(t["status"] == "receiving" and t["rate"] == pytest.approx(400) for t in progress["targets"])

    results = {pk: {"status": "completed", "bytes_received": 1000} for pk in ids.values()}
    await database_sync_to_async(services.transfer_finish)(transfer=transfer, results=results)
    done = await receive(page, "transfer.update", status="completed")
    assert {(t["status"], t["bytes_done"]) for t in done["targets"]} == {("completed", 1000)}
    done = await receive(feed, "transfer_activity", status="completed")
    assert done["data"]["transfer"] == cast.pk

    await feed.disconnect()
    await page.disconnect()


async def test_the_transfer_event_carries_what_the_page_shows_once_known(token: str, cast: Transfer) -> None:
    # The page opens before the worker has asked the source or planned the tree.
    page = await connect(f"/ws/transfers/{cast.pk}?token={token}")
    first = await receive(page, "transfer.update")
    assert (first["sha256"], first["tree"], first["attempts"]) == ("", {}, 0)
    assert {t["parent"] for t in first["targets"]} == {None}

    transfer = (await database_sync_to_async(services.transfer_claim)(worker_id="w", lease_seconds=30, limit=1))[0]
    tree = {"root": "node_1", "fan_out": 1, "edges": [["node_1", "node_2"], ["node_2", "node_3"]]}
    await database_sync_to_async(services.transfer_start)(
        transfer=transfer, size=1000, sha256="ab" * 32, tree=tree, chunk_size=65536
    )
    started = await receive(page, "transfer.update", sha256="ab" * 32)
    assert started["tree"] == tree and started["size"] == 1000 and started["attempts"] == 1
    assert {t["attempts"] for t in started["targets"]} == {1}

    # The parents come right after, within the progress throttle: they must not be dropped.
    nodes = dict(await database_sync_to_async(lambda: list(Node.objects.values_list("name", "pk")))())
    ids = {t["node"]: t["id"] for t in started["targets"]}
    parents = {ids["node_2"]: nodes["node_1"], ids["node_3"]: nodes["node_2"]}
    await database_sync_to_async(services.targets_set_parents)(transfer=transfer, parents=parents)
    planned = await receive(page, "transfer.update", status="running")
    while not planned["targets"][0]["parent"]:
        planned = await receive(page, "transfer.update", status="running")
    assert {t["node"]: t["parent"] for t in planned["targets"]} == {"node_2": "node_1", "node_3": "node_2"}

    now = time.time()
    row = {"status": "receiving", "bytes_done": 400, "bytes_received": 300, "started": now - 1, "updated": now}
    await asyncio.sleep(MIN_PROGRESS_INTERVAL)
    await database_sync_to_async(services.target_progress)(transfer=transfer, rows={ids["node_2"]: row})
    progress = await receive(page, "transfer.update", status="running")
    while progress["targets"][0]["bytes_done"] != 400:
        progress = await receive(page, "transfer.update", status="running")
    node_2 = progress["targets"][0]
    assert node_2["bytes_received"] == 300
    assert node_2["samples"] == [[round(now - 1, 3), 0], [round(now, 3), 300]]
    await page.disconnect()


async def test_the_last_progress_before_a_pause_reaches_the_page(token: str, cast: Transfer) -> None:
    # Two reports within the throttle's interval and then nothing: the second is held back,
    # not dropped, or the page would show stale bytes for the whole pause.
    page = await connect(f"/ws/transfers/{cast.pk}?token={token}")
    await receive(page, "transfer.update")
    transfer = (await database_sync_to_async(services.transfer_claim)(worker_id="w", lease_seconds=30, limit=1))[0]
    await database_sync_to_async(services.transfer_start)(
        transfer=transfer, size=1000, sha256="ab" * 32, tree={}, chunk_size=65536
    )
    ids = [t.pk for t in await database_sync_to_async(list)(transfer.targets.order_by("pk"))]
    now = time.time()
    for done in (100, 200, 300):
        row = {"status": "receiving", "bytes_done": done, "started": now - 1, "updated": now}
        await database_sync_to_async(services.target_progress)(transfer=transfer, rows={ids[0]: row})
    message = await receive(page, "transfer.update", status="running")
    while message["targets"][0]["bytes_done"] != 300:
        message = await receive(page, "transfer.update", status="running")
    await page.disconnect()


async def test_the_dashboard_hears_active_counts_move_with_a_cast(monkeypatch, token: str, cast: Transfer) -> None:
    from transfers import consumers

    monkeypatch.setattr(consumers, "STATUS_REFRESH_SECONDS", 600)  # only events may refresh it
    feed = await connect(f"/ws?token={token}")

    def active(message: dict[str, Any]) -> dict[str, int]:
        return {n["node_id"]: n["active_transfers"] for n in message["data"]["node_statuses"]}

    assert active(await receive(feed, "status_update")) == {"node_1": 1, "node_2": 1, "node_3": 1}
    await database_sync_to_async(services.transfer_cancel)(transfer=cast)
    await receive(feed, "transfer_activity", status="cancelled")
    message = await receive_within(feed, "status_update", within=3)
    assert active(message) == {"node_1": 0, "node_2": 0, "node_3": 0}
    await feed.disconnect()


async def test_a_client_that_reconnects_gets_the_current_state(token: str, cast: Transfer) -> None:
    await database_sync_to_async(services.transfer_cancel)(transfer=cast)
    page = await connect(f"/ws/transfers/{cast.pk}?token={token}")
    state = await receive(page, "transfer.update")
    assert state["status"] == "cancelled"
    assert {t["status"] for t in state["targets"]} == {Target.Status.CANCELLED}
    await page.disconnect()


async def test_an_unknown_transfer_or_node_is_4404(token: str) -> None:
    for path in ["/ws/transfers/999", "/ws/nodes/999"]:
        communicator = await connect(f"{path}?token={token}")
        assert await close_code(communicator) == 4404, path


async def test_node_changes_reach_the_node_page_and_the_feed(token: str, storage) -> None:
    node = await database_sync_to_async(node_create)(name="node_1")
    feed = await connect(f"/ws?token={token}")
    page = await connect(f"/ws/nodes/{node.pk}?token={token}")
    assert (await receive(page, "node.update"))["enabled"] is True
    await receive(feed, "status_update")

    await database_sync_to_async(node_set_enabled)(node=node, enabled=False)
    assert (await receive(page, "node.update"))["enabled"] is False
    status = await receive(feed, "status_update")
    assert status["data"]["node_statuses"][0]["enabled"] is False
    await feed.disconnect()
    await page.disconnect()


PUBLISH_FROM_ANOTHER_PROCESS = """
import django
django.setup()
from transfers.events import STATUS_GROUP, publish, transfer_group
publish([STATUS_GROUP, transfer_group({id})], {{
    "type": "transfer.update", "transfer": {id}, "status": "running", "size": 10, "error": "",
    "targets": [{{"id": 1, "node": "node_2", "status": "receiving", "bytes_done": 5, "rate": 5.0, "error": ""}}],
}})
"""


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="REDIS_URL is unset: no channel layer across processes")
async def test_events_published_by_another_process_arrive_through_redis(settings, token: str, cast: Transfer) -> None:
    feed = await connect(f"/ws?token={token}")
    page = await connect(f"/ws/transfers/{cast.pk}?token={token}")
    await receive(feed, "status_update")
    await receive(page, "transfer.update")

    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        REDIS_URL=settings.REDIS_URL,
        CASTRAY_REDIS_PREFIX=settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
    )
    code = PUBLISH_FROM_ANOTHER_PROCESS.format(id=cast.pk)
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", code, cwd=BASE_DIR, env=env)
    assert await process.wait() == 0

    relayed = await receive(page, "transfer.update", status="running")
    assert relayed["targets"][0]["bytes_done"] == 5
    activity = await receive(feed, "transfer_activity", status="running")
    assert activity["data"]["file_name"] == "a.bin"
    await feed.disconnect()
    await page.disconnect()


async def test_one_snapshot_is_built_per_change_whatever_the_number_of_clients(monkeypatch, token, storage) -> None:
    # Built per client, 500 dashboards meant 500 rounds of queries per change.
    from transfers import consumers, feed, selectors

    monkeypatch.setattr(consumers, "STATUS_REFRESH_SECONDS", 600)  # only events may refresh it
    builds = []

    def counted() -> dict[str, Any]:
        builds.append(1)
        return selectors.status_snapshot()

    monkeypatch.setattr(feed, "status_snapshot", counted)
    node = await database_sync_to_async(node_create)(name="node_1")
    clients = [await connect(f"/ws?token={token}") for _ in range(20)]
    for client in clients:
        await receive(client, "status_update")
    builds.clear()
    await database_sync_to_async(node_set_enabled)(node=node, enabled=False)
    for client in clients:
        status = await receive(client, "status_update")
        assert status["data"]["node_statuses"][0]["enabled"] is False
    assert len(builds) == 1
    for client in clients:
        await client.disconnect()
