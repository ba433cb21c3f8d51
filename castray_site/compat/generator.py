"""The file generator's old paths: presets, create, create-and-transfer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from castray_site.compat.casts import queued_results, transfer_url
from castray_site.compat.serializers import TAG, CompatGenerateAndTransferSerializer, CompatGenerateSerializer
from dataplane.generator import CONTENT_TYPES, PRESETS, format_size
from nodes.file_services import file_generate
from nodes.files import FileInfo
from nodes.models import Node
from transfers.services import resolve_targets, transfer_create


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
        results = queued_results(transfer)
        return Response(
            {
                "success": True,
                "message": f"{info.name} written to {sender.name}; cast #{transfer.pk} queued",
                "file_info": _file_info(request, sender, info, data["content_type"]),
                "transfer_summary": {
                    "transfer_id": transfer.pk,
                    "transfer_url": transfer_url(request, transfer),
                    "status": transfer.status,
                    "cast_type": transfer.cast_type,
                    "sender_id": sender.name,
                    "file_name": transfer.file_name,
                    "recipients": [r["recipient"] for r in results],
                    "results": results,
                },
            }
        )
