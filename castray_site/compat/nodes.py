"""Nodes through the old paths: add, remove, read a node's messages, switch its auto transfer."""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from castray_site.compat.serializers import (
    TAG,
    CompatAutoToggleSerializer,
    CompatMessagesQuerySerializer,
    CompatNodeCreateSerializer,
    Result,
)
from castray_site.errors import Conflict
from castray_site.lib import unix_seconds
from castray_site.permissions import IsStaff
from nodes.auto_transfer import auto_transfer_set
from nodes.edit_services import node_register, node_remove
from nodes.models import Node
from transfers.models import Delivery, Message


def _node(node_id: str) -> Node:
    node = Node.objects.named(node_id)
    if node is None:
        raise NotFound(f"no node named {node_id!r}; GET /api/status lists them")
    return node


class NodesView(APIView):
    """POST /api/nodes: add a node (staff)."""

    permission_classes = [IsStaff]

    @extend_schema(
        tags=TAG,
        request=CompatNodeCreateSerializer,
        responses={200: Result, 409: OpenApiResponse(description="A node of that name exists.")},
    )
    def post(self, request: Request) -> Response:
        serializer = CompatNodeCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        name = serializer.validated_data["node_id"]
        if Node.objects.filter(name=name).exists():
            raise Conflict("node_id", f"a node named {name} already exists")
        node = node_register(name=name, port=serializer.validated_data.get("port") or None)
        return Response(
            {"success": True, "message": f"node {node.name} created; the worker starts it", "node_id": node.name}
        )


class NodeView(APIView):
    """DELETE /api/nodes/{node_id}: remove a node (staff)."""

    permission_classes = [IsStaff]

    @extend_schema(tags=TAG, request=None, responses={200: Result})
    def delete(self, request: Request, node_id: str) -> Response:
        node = _node(node_id)
        if node_remove(node=node):
            message = f"node {node_id} deleted; its files stay in its storage"
        else:
            message = f"node {node_id} took part in casts, so it was disabled and kept as their record"
        return Response({"success": True, "message": message, "node_id": node_id})


class NodeMessagesView(APIView):
    """GET /api/nodes/{node_id}/messages?count=50: the node's recent messages, newest first."""

    @extend_schema(tags=TAG, parameters=[CompatMessagesQuerySerializer], responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, node_id: str) -> Response:
        query = CompatMessagesQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        count = query.validated_data["count"]
        node = _node(node_id)
        sent = (
            Message.objects.filter(sender=node)
            .prefetch_related(Prefetch("deliveries", queryset=Delivery.objects.select_related("node")))
            .order_by("-created_at", "-id")[:count]
        )
        received = (
            Delivery.objects.filter(node=node)
            .select_related("message", "message__sender")
            .order_by("-message__created_at", "-id")[:count]
        )
        rows = [
            {
                "id": m.pk,
                "direction": "sent",
                "message_type": m.kind,
                "cast_type": m.cast_type,
                "content": m.content,
                "sender": node.name,
                "recipients": [d.node.name for d in m.deliveries.all()],
                "status": m.status,
                "timestamp": unix_seconds(m.created_at),
            }
            for m in sent
        ] + [
            {
                "id": d.message_id,
                "direction": "received",
                "message_type": d.message.kind,
                "cast_type": d.message.cast_type,
                "content": d.message.content,
                "sender": d.message.sender.name,
                "recipients": [node.name],
                "status": d.status,
                "timestamp": unix_seconds(d.message.created_at),
                "delivered_at": unix_seconds(d.delivered_at),
            }
            for d in received
        ]
        rows.sort(key=lambda row: (row["timestamp"] or 0, row["id"]), reverse=True)
        return Response({"node_id": node.name, "count": len(rows[:count]), "messages": rows[:count]})


class AutoToggleView(APIView):
    """POST /api/file-transfers/auto/toggle: remember a node's auto-transfer switch (staff)."""

    permission_classes = [IsStaff]

    @extend_schema(tags=TAG, request=CompatAutoToggleSerializer, responses={200: Result})
    def post(self, request: Request) -> Response:
        serializer = CompatAutoToggleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        node, enabled = serializer.validated_data["node_id"], serializer.validated_data["enabled"]
        auto_transfer_set(node=node, enabled=enabled)
        state = "on" if enabled else "off"
        return Response({"success": True, "message": f"auto transfer for {node.name} is {state}", "enabled": enabled})
