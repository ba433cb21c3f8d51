"""Ray cluster stats and run-time configuration: /ray/stats, /ray/configure, /api/demo.

All of them read or write database rows; the worker records what Ray reports every
heartbeat and applies recorded configuration within one, so no request waits on Ray.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from castray_site.lib import iso
from castray_site.permissions import StaffWritesStatusReads, StatusReader
from clusters import selectors, services
from clusters.config_serializers import ConfigureSerializer, DemoSerializer
from clusters.models import RuntimeConfig

TAG = ["clusters"]


class RayStatsView(APIView):
    """GET /ray/stats: resources, nodes, actors and object store use, as the worker last saw them."""

    permission_classes = [StatusReader]

    @extend_schema(tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        cluster = services.cluster_active()
        stats = cluster.stats or {}
        per_node = stats.get("nodes", {})
        nodes = []
        for entry in selectors.ray_nodes(cluster):
            nodes.append({**entry, "usage": per_node.get(entry["id"], {})})
        return Response(
            {
                "cluster": selectors.cluster_summary(cluster),
                "dashboard_url": cluster.dashboard_url or None,
                "resources": {"total": cluster.resources, "available": cluster.available_resources},
                "nodes": nodes,
                "actors": stats.get("actors", {}),
                "object_store": stats.get("object_store", {}),
                "collected_at": stats.get("collected_at"),
                "totals": selectors.totals(cluster),
            }
        )


def _config_body(config: RuntimeConfig | None, message: str = "") -> dict[str, Any]:
    recorded = {field: getattr(config, field, None) if config else None for field in services.CONFIG_SETTINGS}
    body: dict[str, Any] = {
        "success": True,
        "config": services.runtime_config_effective(config),
        "recorded": recorded,
        "updated_at": iso(config.updated_at) if config else None,
    }
    if message:
        body["message"] = message
    return body


class ConfigureView(APIView):
    """GET /ray/configure: the run-time configuration. POST (staff): change it; null restores a default."""

    permission_classes = [StaffWritesStatusReads]

    @extend_schema(tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        return Response(_config_body(RuntimeConfig.objects.filter(pk=1).first()))

    @extend_schema(tags=TAG, request=ConfigureSerializer, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        serializer = ConfigureSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        config = services.runtime_config_update(changes=serializer.validated_data, user=request.user)
        changed = ", ".join(sorted(serializer.validated_data))
        return Response(_config_body(config, f"recorded {changed}; the workers apply it within a heartbeat"))


class DemoView(APIView):
    """GET /api/demo: whether demo casts run. POST (staff) {enabled, interval?, file_size?}: switch them."""

    permission_classes = [StaffWritesStatusReads]

    @extend_schema(tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        effective = services.runtime_config_effective()
        return Response(
            {
                "enabled": effective["demo_enabled"],
                "interval": effective["demo_interval"],
                "file_size": effective["demo_file_size"],
            }
        )

    @extend_schema(tags=TAG, request=DemoSerializer, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        serializer = DemoSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        changes: dict[str, Any] = {"demo_enabled": data["enabled"]}
        for key in ("interval", "file_size"):
            if key in data:
                changes[f"demo_{key}"] = data[key]
        services.runtime_config_update(changes=changes, user=request.user)
        effective = services.runtime_config_effective()
        word = "on" if effective["demo_enabled"] else "off"
        return Response(
            {
                "success": True,
                "message": f"demo casts {word}: every {effective['demo_interval']:.0f} s, "
                f"{effective['demo_file_size']} bytes from a random online node to up to two others",
                "enabled": effective["demo_enabled"],
                "interval": effective["demo_interval"],
                "file_size": effective["demo_file_size"],
            }
        )
