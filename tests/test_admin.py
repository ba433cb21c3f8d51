"""The admin for operators: every model's pages render, and the actions change what they say.

Root is a superuser (an operator); Alice is an ordinary user and may not enter the admin.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from clusters.models import Cluster
from nodes.models import Node, NodeGroup
from nodes.services import node_create
from transfers import services
from transfers.models import Delivery, Message, Target, Transfer

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(db) -> Client:  # type: ignore[no-untyped-def]
    User.objects.create_superuser("root", "", "root-password")
    client = Client()
    client.login(username="root", password="root-password")
    return client


@pytest.fixture
def world(storage: Path) -> dict[str, object]:
    nodes = [node_create(name=f"node_{i}") for i in (1, 2, 3)]
    Node.objects.update(status=Node.Status.ONLINE)
    group = NodeGroup.objects.create(name="edge")
    group.nodes.set(nodes[1:])
    transfer = services.transfer_create(source=nodes[0], file_name="a.bin", targets=nodes[1:])
    message = services.message_create(sender=nodes[0], content="hello", targets=nodes[1:])
    Cluster.objects.create(name="default", status=Cluster.Status.DEGRADED, last_error="GCS went away")
    return {"nodes": nodes, "group": group, "transfer": transfer, "message": message}


def test_every_changelist_and_change_page_renders(operator: Client, world: dict[str, object]) -> None:
    objects = {
        "clusters/cluster": Cluster.objects.get(),
        "nodes/node": world["nodes"][0],  # type: ignore[index]
        "nodes/nodegroup": world["group"],
        "transfers/transfer": world["transfer"],
        "transfers/target": Target.objects.first(),
        "transfers/message": world["message"],
        "transfers/delivery": Delivery.objects.first(),
    }
    for path, obj in objects.items():
        assert operator.get(f"/admin/{path}/").status_code == 200, path
        assert operator.get(f"/admin/{path}/?q=node").status_code == 200, path
        assert operator.get(f"/admin/{path}/{obj.pk}/change/").status_code == 200, path  # type: ignore[attr-defined]
    assert operator.get("/admin/nodes/nodegroup/add/").status_code == 200
    assert operator.get("/admin/nodes/node/add/").status_code == 200


def test_casts_and_messages_are_not_added_in_the_admin(operator: Client, world: dict[str, object]) -> None:
    # They go through transfer_create / message_create, which check them.
    assert operator.get("/admin/transfers/transfer/add/").status_code == 403
    assert operator.get("/admin/transfers/message/add/").status_code == 403


def test_ordinary_users_cannot_enter_the_admin(alice: User) -> None:
    client = Client()
    client.force_login(alice)
    assert client.get("/admin/transfers/transfer/").status_code == 302


def test_the_transfer_list_filters_and_shows_progress(operator: Client, world: dict[str, object]) -> None:
    text = operator.get("/admin/transfers/transfer/?status__exact=queued").content.decode()
    assert "a.bin" in text and "0/2" in text
    assert "a.bin" not in operator.get("/admin/transfers/transfer/?status__exact=completed").content.decode()


def _act(client: Client, model: str, action: str, pks: list[int]) -> str:
    response = client.post(
        f"/admin/{model}/", {"action": action, "_selected_action": [str(pk) for pk in pks]}, follow=True
    )
    assert response.status_code == 200
    return response.content.decode()


def test_cancel_then_retry_casts(operator: Client, world: dict[str, object]) -> None:
    transfer: Transfer = world["transfer"]  # type: ignore[assignment]
    text = _act(operator, "transfers/transfer", "retry_transfers", [transfer.pk])
    assert "still queued" in text and Transfer.objects.count() == 1

    text = _act(operator, "transfers/transfer", "cancel_transfers", [transfer.pk])
    assert "Cancelled 1 cast(s)" in text
    transfer.refresh_from_db()
    assert transfer.status == Transfer.Status.CANCELLED
    assert set(transfer.targets.values_list("status", flat=True)) == {Target.Status.CANCELLED}

    text = _act(operator, "transfers/transfer", "retry_transfers", [transfer.pk])
    again = Transfer.objects.exclude(pk=transfer.pk).get()
    assert f"#{again.pk}" in text
    assert (again.status, again.source_id, again.file_name) == (Transfer.Status.QUEUED, transfer.source_id, "a.bin")
    assert sorted(again.targets.values_list("node__name", flat=True)) == ["node_2", "node_3"]


def test_disable_and_enable_nodes(operator: Client, world: dict[str, object]) -> None:
    node: Node = world["nodes"][2]  # type: ignore[index]
    _act(operator, "nodes/node", "disable_nodes", [node.pk])
    node.refresh_from_db()
    assert not node.enabled and node.status == Node.Status.OFFLINE and node.status_detail == "disabled by an operator"
    _act(operator, "nodes/node", "enable_nodes", [node.pk])
    node.refresh_from_db()
    assert node.enabled


def test_unticking_enabled_on_the_form_goes_through_the_service(operator: Client, world: dict[str, object]) -> None:
    node: Node = world["nodes"][1]  # type: ignore[index]
    response = operator.post(
        f"/admin/nodes/node/{node.pk}/change/",
        {
            "name": node.name,
            "ray_node_id": "",
            "storage_dir": "",
            "requested_port": "",
            "egress_cap": "1000000",
            "ingress_cap": "",
            "max_concurrent": "",
            "NodeGroup_nodes-TOTAL_FORMS": "0",
            "NodeGroup_nodes-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    node.refresh_from_db()
    assert not node.enabled and node.status == Node.Status.OFFLINE and node.egress_cap == 1_000_000


def test_group_members_are_edited_inline(operator: Client, world: dict[str, object]) -> None:
    first = world["nodes"][0]  # type: ignore[index]
    response = operator.post(
        "/admin/nodes/nodegroup/add/",
        {
            "name": "solo",
            "description": "just one",
            "NodeGroup_nodes-TOTAL_FORMS": "1",
            "NodeGroup_nodes-INITIAL_FORMS": "0",
            "NodeGroup_nodes-0-node": str(first.pk),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert list(NodeGroup.objects.get(name="solo").nodes.all()) == [first]
    assert "solo" in operator.get("/admin/nodes/nodegroup/").content.decode()


def test_message_page_shows_its_deliveries(operator: Client, world: dict[str, object]) -> None:
    message: Message = world["message"]  # type: ignore[assignment]
    text = operator.get(f"/admin/transfers/message/{message.pk}/change/").content.decode()
    assert "deliveries" in text and "node_2" in text and "node_3" in text and "Pending" in text


def test_the_admin_is_castray_s_and_speaks_plainly(operator: Client) -> None:
    text = operator.get("/admin/").content.decode()
    assert "| CastRay admin</title>" in text and ">CastRay</a>" in text
    assert "Django administration" not in text and "Django site admin" not in text
    assert "Deliveries" in text and "Deliverys" not in text
    # Django's auth groups grant nothing in CastRay (staff or not is what counts): only node groups are listed.
    assert "/admin/auth/group/" not in text and "Node groups" in text
    assert operator.get("/admin/auth/group/").status_code == 404
