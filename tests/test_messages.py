"""Messages cast unicast, to a group or to all, delivered to each node's inbox and recorded."""

from __future__ import annotations

import json

import pytest

from nodes.models import NodeGroup
from nodes.services import node_set_enabled
from transfers.models import Delivery, Message
from transfers.services import message_create

pytestmark = [pytest.mark.ray, pytest.mark.django_db]


def delivered(*messages: Message):  # type: ignore[no-untyped-def]
    def check() -> bool:
        return not Message.objects.filter(pk__in=[m.pk for m in messages], status__in=["queued", "running"]).exists()

    return check


def inbox(worker, node, count: int = 50) -> list[dict]:  # type: ignore[no-untyped-def]
    import ray

    return ray.get(worker.actors[node.pk].inbox_latest.remote(count))


def test_unicast_group_and_broadcast_messages_reach_the_inboxes(worker, make_nodes) -> None:
    nodes = make_nodes(4)
    group = NodeGroup.objects.create(name="pair")
    group.nodes.set(nodes[2:])
    one = message_create(sender=nodes[0], content="hello c1", targets=[nodes[1]])
    grouped = message_create(sender=nodes[0], content='{"job": 7}', kind="json", group=group)
    everyone = message_create(sender=nodes[1], content="all hands", broadcast=True)
    assert worker.run_until(delivered(one, grouped, everyone), timeout=60)

    for message in (one, grouped, everyone):
        message.refresh_from_db()
        assert message.status == Message.Status.COMPLETED
        assert set(message.deliveries.values_list("status", flat=True)) == {"delivered"}
    assert [m["content"] for m in inbox(worker, nodes[1])] == ["hello c1"]
    # Two senders deliver concurrently: the inbox keeps order per sender, not across senders.
    assert sorted(m["content"] for m in inbox(worker, nodes[2])) == ["all hands", '{"job": 7}']
    jobs = [m for m in inbox(worker, nodes[3]) if m["kind"] == "json"]
    assert json.loads(jobs[0]["content"]) == {"job": 7} and jobs[0]["sender"] == "c0"
    assert inbox(worker, nodes[0])[0]["sender"] == "c1"
    assert everyone.deliveries.count() == 3


def test_a_disabled_recipient_fails_with_the_reason_and_the_message_is_partial(worker, make_nodes) -> None:
    nodes = make_nodes(3)
    message = message_create(sender=nodes[0], content="hi", targets=nodes[1:])
    node_set_enabled(node=nodes[2], enabled=False)
    assert worker.run_until(delivered(message), timeout=60)
    message.refresh_from_db()
    assert message.status == Message.Status.PARTIAL
    failed = message.deliveries.get(node=nodes[2])
    assert failed.status == Delivery.Status.FAILED and failed.error == "recipient c2 is disabled"


def test_the_inbox_is_bounded_and_keeps_the_newest(worker, make_nodes, settings) -> None:
    settings.CASTRAY_INBOX_SIZE = 5
    nodes = make_nodes(2)
    messages = [message_create(sender=nodes[0], content=f"m{i}", targets=[nodes[1]]) for i in range(12)]
    assert worker.run_until(delivered(*messages), timeout=60)
    assert [m["content"] for m in inbox(worker, nodes[1])] == ["m11", "m10", "m9", "m8", "m7"]


def test_bad_messages_are_rejected(db, storage) -> None:
    from nodes.services import node_create
    from transfers.services import CastError

    a, b = node_create(name="a"), node_create(name="b")
    with pytest.raises(CastError, match="not valid JSON"):
        message_create(sender=a, content="{oops", kind="json", targets=[b])
    with pytest.raises(CastError, match="at most 64 KiB"):
        message_create(sender=a, content="x" * 70_000, targets=[b])
    with pytest.raises(CastError, match="message_type"):
        message_create(sender=a, content="x", kind="xml", targets=[b])
