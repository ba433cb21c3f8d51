"""POST /api/send and POST /api/file-transfers/manual: a message or a cast, queued."""

from __future__ import annotations

import time
from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from castray_site.compat.serializers import TAG, CompatManualTransferSerializer, CompatSendSerializer, Result
from transfers.models import Transfer
from transfers.services import message_create, transfer_create


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


def transfer_url(request: Request, transfer: Transfer) -> str:
    return request.build_absolute_uri(reverse("v1:transfer-detail", kwargs={"pk": transfer.pk}))


def queued_results(transfer: Transfer) -> list[dict[str, Any]]:
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
        results = queued_results(transfer)
        return Response(
            {
                "success": True,
                "message": f"cast #{transfer.pk} of {transfer.file_name} to {len(results)} node(s) queued",
                "results": results,
                "transfer_id": transfer.pk,
                "transfer_url": transfer_url(request, transfer),
                "status": transfer.status,
            }
        )
