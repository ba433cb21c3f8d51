"""The earlier CastRay's endpoints (docs/compatibility.md), answered from CastRay's models.

Same paths and the field names old clients read. Two differences, both documented in the
README: every endpoint needs a login or an API token (CASTRAY_ANONYMOUS_STATUS opens
/api/status and /health details to anonymous clients), and errors are a 4xx with
`{"success": false, "message": ...}` instead of a 200.

Casting is asynchronous here: `success: true` means the cast or message was accepted and queued;
its outcome is in /api/v1/transfers/<id>/ (or /api/v1/messages/<id>/) and on /ws.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from django.db.models import Prefetch
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from castray_site import health as health_module
from castray_site.api import Conflict, IsStaff, StatusReader
from dataplane.generator import CONTENT_TYPES, PRESETS, format_size
from nodes.auto_transfer import auto_transfer_flags, auto_transfer_set
from nodes.edit_services import node_register, node_remove
from nodes.file_services import file_generate
from nodes.files import FileInfo
from nodes.models import Node
from transfers.compat_serializers import (
    CompatAutoToggleSerializer,
    CompatGenerateAndTransferSerializer,
    CompatGenerateSerializer,
    CompatManualTransferSerializer,
    CompatMessagesQuerySerializer,
    CompatNodeCreateSerializer,
    CompatSendSerializer,
)
from transfers.models import Delivery, Message, Transfer
from transfers.services import message_create, resolve_targets, transfer_create
from transfers.snapshot import status_snapshot

TAG = ["compatibility"]

Result = inline_serializer(
    "CompatResult", fields={"success": serializers.BooleanField(), "message": serializers.CharField()}
)


def _node(node_id: str) -> Node:
    try:
        return Node.objects.get(name=node_id)
    except Node.DoesNotExist:
        raise NotFound(f"no node named {node_id!r}; GET /api/status lists them") from None


def _status() -> dict[str, Any]:
    snapshot = status_snapshot()
    flags = auto_transfer_flags(s["id"] for s in snapshot["node_statuses"])
    for node_status in snapshot["node_statuses"]:
        node_status["auto_transfer_enabled"] = flags[node_status["id"]]
    return snapshot


class StatusView(APIView):
    """GET /api/status: nodes with their counters, the Ray cluster, node ports."""

    permission_classes = [StatusReader]

    @extend_schema(tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        return Response(_status())


class NodesView(APIView):
    """POST /api/nodes: add a node (staff)."""

    permission_classes = [IsStaff]

    @extend_schema(tags=TAG, request=CompatNodeCreateSerializer, responses={200: Result})
    def post(self, request: Request) -> Response:
        serializer = CompatNodeCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        name = serializer.validated_data["node_id"]
        if Node.objects.filter(name=name).exists():
            raise Conflict({"node_id": [f"a node named {name} already exists"]})
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


class SendView(APIView):
    """POST /api/send: cast a short text or JSON message."""

    @extend_schema(tags=TAG, request=CompatSendSerializer, responses={200: Result})
    def post(self, request: Request) -> Response:
        started = time.perf_counter()
        serializer = CompatSendSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        message = message_create(
            sender=data["sender"],
            content=data["content"],
            kind=data["message_type"],
            requested_by=request.user,
            **data["choice"],
        )
        count = message.deliveries.count()
        return Response(
            {
                "success": True,
                "message": f"message #{message.pk} queued for {count} recipient(s)",
                "recipients_count": count,
                # Deliveries happen after this answer; their failures are in the message's record.
                "failed_recipients": [],
                "delivery_time": round(time.perf_counter() - started, 6),
                "message_id": message.pk,
                "status": message.status,
                "cast_type": message.cast_type,
            }
        )


def _timestamp(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment else None


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
                "timestamp": _timestamp(m.created_at),
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
                "timestamp": _timestamp(d.message.created_at),
                "delivered_at": _timestamp(d.delivered_at),
            }
            for d in received
        ]
        rows.sort(key=lambda row: (row["timestamp"] or 0, row["id"]), reverse=True)
        return Response({"node_id": node.name, "count": len(rows[:count]), "messages": rows[:count]})


class FileTransfersStatusView(APIView):
    """GET /api/file-transfers/status: per node, its cast counters and active casts."""

    @extend_schema(tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        return Response(
            {
                s["node_id"]: {
                    "node_id": s["node_id"],
                    "file_transfer_stats": s["file_transfer_stats"],
                    "active_transfers": s["active_transfers"],
                    "auto_transfer_enabled": s["auto_transfer_enabled"],
                }
                for s in _status()["node_statuses"]
            }
        )


def _transfer_url(request: Request, transfer: Transfer) -> str:
    return request.build_absolute_uri(reverse("v1:transfer-detail", kwargs={"pk": transfer.pk}))


def _queued_results(transfer: Transfer) -> list[dict[str, Any]]:
    return [
        {"recipient": target.node.name, "success": True, "message": "queued"}
        for target in transfer.targets.select_related("node").order_by("node__name")
    ]


class ManualTransferView(APIView):
    """POST /api/file-transfers/manual: cast a file from one node's storage to recipients."""

    @extend_schema(tags=TAG, request=CompatManualTransferSerializer, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        serializer = CompatManualTransferSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        transfer = transfer_create(
            source=data["sender_id"],
            file_name=data["file_name"],
            targets=data["recipients"],
            mode=data["mode"],
            requested_by=request.user,
        )
        results = _queued_results(transfer)
        return Response(
            {
                "success": True,
                "message": f"cast #{transfer.pk} of {transfer.file_name} to {len(results)} node(s) queued",
                "results": results,
                "transfer_id": transfer.pk,
                "transfer_url": _transfer_url(request, transfer),
                "status": transfer.status,
            }
        )


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


class PresetsView(APIView):
    """GET /api/file-generator/presets."""

    @extend_schema(tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        return Response({"presets": PRESETS, "content_types": list(CONTENT_TYPES)})


def _generated_name(size: int, content: str) -> str:
    stamp = datetime.now(tz=UTC).strftime("%Y%m%d_%H%M%S")
    label = format_size(size).replace(" ", "").replace(".", "_")
    return f"generated/{label}_{content}_{stamp}_{uuid.uuid4().hex[:6]}.dat"


def _file_info(request: Request, node: Node, info: FileInfo, content: str) -> dict[str, Any]:
    url = reverse("v1:node-file", kwargs={"name": node.name, "file_path": info.name})
    return {
        "file_name": info.name,
        "node_id": node.name,
        "actual_size": info.size,
        "size_formatted": format_size(info.size),
        "content_type": content,
        "sha256": info.sha256,
        "download_url": request.build_absolute_uri(url),
        "created_time": info.modified.isoformat(),
    }


class GenerateView(APIView):
    """POST /api/file-generator/create: write a file of a given size into a node's storage."""

    @extend_schema(tags=TAG, request=CompatGenerateSerializer, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        serializer = CompatGenerateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        node = data["node_id"]
        name = data.get("file_name") or _generated_name(data["size"], data["content_type"])
        info = file_generate(
            node=node, name=name, size=data["size"], content=data["content_type"], overwrite=data["overwrite"]
        )
        return Response(
            {
                "success": True,
                "message": f"{info.name} ({format_size(info.size)}) written to {node.name}",
                "file_info": _file_info(request, node, info, data["content_type"]),
            }
        )


class GenerateAndTransferView(APIView):
    """POST /api/file-generator/create-and-transfer: generate a file on the sender, then cast it."""

    @extend_schema(tags=TAG, request=CompatGenerateAndTransferSerializer, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        serializer = CompatGenerateAndTransferSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        sender = data["sender_id"]
        # Refuse impossible recipients before writing a byte.
        resolve_targets(source=sender, targets=data["recipients"])
        name = data.get("file_name") or _generated_name(data["size"], data["content_type"])
        info = file_generate(
            node=sender, name=name, size=data["size"], content=data["content_type"], overwrite=data["overwrite"]
        )
        transfer = transfer_create(
            source=sender, file_name=info.name, targets=data["recipients"], mode=data["mode"], requested_by=request.user
        )
        results = _queued_results(transfer)
        return Response(
            {
                "success": True,
                "message": f"{info.name} written to {sender.name}; cast #{transfer.pk} queued",
                "file_info": _file_info(request, sender, info, data["content_type"]),
                "transfer_summary": {
                    "transfer_id": transfer.pk,
                    "transfer_url": _transfer_url(request, transfer),
                    "status": transfer.status,
                    "cast_type": transfer.cast_type,
                    "sender_id": sender.name,
                    "file_name": transfer.file_name,
                    "recipients": [r["recipient"] for r in results],
                    "results": results,
                },
            }
        )


class HealthView(APIView):
    """GET /health: liveness and readiness for anyone; the details need a login.

    Probes (load balancers, orchestrators) cannot log in, so `live`, `ready` and each check's
    `ok` are public. Error texts and worker ids are shown to authenticated clients, or to
    everyone with CASTRAY_ANONYMOUS_STATUS.
    """

    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []

    @extend_schema(
        tags=TAG, responses={200: OpenApiTypes.OBJECT, 503: OpenApiResponse(description="The database is down.")}
    )
    def get(self, request: Request) -> Response:
        answer = health_module.health(request._request)
        body = json.loads(answer.content)
        if not StatusReader().has_permission(request, self):
            body["checks"] = {name: {"ok": check["ok"]} for name, check in body["checks"].items()}
        return Response(body, status=answer.status_code)
