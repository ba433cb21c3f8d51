"""GET /api/status, GET /api/file-transfers/status and GET /health: the earlier CastRay's status reads."""

from __future__ import annotations

import json
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from castray_site import health as health_module
from castray_site.compat.serializers import TAG
from castray_site.permissions import StatusReader
from nodes.auto_transfer import auto_transfer_flags
from transfers.selectors import status_snapshot


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


class HealthView(APIView):
    """GET /health: liveness and readiness for anyone; the details need a login.

    Probes (load balancers, orchestrators) cannot log in, so `live`, `ready` and each check's
    `ok` are public. Error texts and worker ids are shown to authenticated clients, or to
    everyone with CASTRAY_ANONYMOUS_STATUS.
    """

    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []

    @extend_schema(
        tags=TAG,
        responses={
            200: OpenApiTypes.OBJECT,
            503: OpenApiResponse(OpenApiTypes.OBJECT, description="The database is down (the same body)."),
        },
    )
    def get(self, request: Request) -> Response:
        answer = health_module.health(request._request)
        body = json.loads(answer.content)
        if not StatusReader().has_permission(request, self):
            body["checks"] = {name: {"ok": check["ok"]} for name, check in body["checks"].items()}
        return Response(body, status=answer.status_code)
