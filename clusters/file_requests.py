"""Files on a node whose storage is on another host: list, fetch (then download) and delete.

POST /api/cluster/file-requests records the request (202); a worker carries it out through
the node's actor or a Ray task on the node's host; GET /api/cluster/file-requests/<id> tells
how it went; GET .../<id>/download streams a fetched file from the worker's spool. Clients
poll: a view never waits on Ray, nor on the worker. Deleting is for staff.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from castray_site.errors import Conflict
from castray_site.lib import iso
from clusters import services
from clusters.models import NodeFileRequest
from nodes.models import Node

TAG = ["clusters"]


def entry(request: NodeFileRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": request.pk,
        "node": request.node.name,
        "op": request.op,
        "name": request.name,
        "status": request.status,
        "result": request.result,
        "error": request.error,
        "created_at": request.created_at.isoformat(),
        "finished_at": iso(request.finished_at),
        "url": f"/api/cluster/file-requests/{request.pk}",
    }
    if request.op == NodeFileRequest.Op.FETCH and request.status == NodeFileRequest.Status.DONE:
        body["download_url"] = f"/api/cluster/file-requests/{request.pk}/download"
    return body


def visible(request: Request) -> Any:
    # People see their own requests; staff see all.
    qs = NodeFileRequest.objects.select_related("node")
    return qs if request.user.is_staff else qs.filter(requested_by=request.user)


class FileRequestsView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=TAG,
        request=inline_serializer(
            "NodeFileRequestIn",
            {
                "node": serializers.CharField(),
                "op": serializers.ChoiceField(NodeFileRequest.Op.choices),
                "name": serializers.CharField(required=False),
            },
        ),
        responses={
            202: OpenApiTypes.OBJECT,
            400: OpenApiTypes.OBJECT,
            409: OpenApiResponse(description="The node is disabled."),
        },
    )
    def post(self, request: Request) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        node = Node.objects.named(str(data.get("node", "")))
        if node is None:
            raise exceptions.ValidationError({"node": ["no node by that name; GET /api/v1/nodes/ lists them"]})
        op = str(data.get("op", ""))
        if op == NodeFileRequest.Op.DELETE and not request.user.is_staff:
            raise exceptions.PermissionDenied("only staff may delete files; ask an operator")
        record = services.file_request_create(
            node=node, op=op, name=str(data.get("name", "")), requested_by=request.user
        )
        return Response(entry(record), status=status.HTTP_202_ACCEPTED)


class FileRequestView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(tags=TAG, responses={200: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: int) -> Response:
        return Response(entry(get_object_or_404(visible(request), pk=pk)))


class FileRequestDownloadView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=TAG,
        responses={
            # The media type the file's name suggests (application/octet-stream when none does).
            (200, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The fetched file."),
            409: OpenApiResponse(description="The fetch has not finished, or this server cannot read its copy."),
        },
    )
    def get(self, request: Request, pk: int) -> FileResponse:
        record = get_object_or_404(visible(request), pk=pk, op=NodeFileRequest.Op.FETCH)
        if record.status == NodeFileRequest.Status.EXPIRED:
            raise exceptions.NotFound("the fetched copy has expired; fetch the file again")
        if record.status != NodeFileRequest.Status.DONE:
            raise Conflict("status", record.error or f"the request is {record.status}; try again when it is done")
        path = Path(record.spool_path)
        if not path.is_file():
            raise Conflict(
                "status", f"the worker {record.worker_id} spooled it where this server cannot read it ({path})"
            )
        response = FileResponse(open(path, "rb"), as_attachment=True, filename=Path(record.name).name)  # noqa: SIM115
        response["X-Content-SHA256"] = record.result.get("sha256", "")
        return response
