"""The earlier CastRay's cluster endpoints: /api/cluster/*-external, /api/nodes/external, /api/ray-dashboard."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from castray_site.errors import Conflict
from castray_site.lib import iso
from castray_site.permissions import IsStaff, StatusReader
from clusters import discovery, selectors, services
from clusters.models import Cluster, ClusterOperation

TAG = ["clusters"]


def external_nodes(cluster: Cluster) -> dict[str, dict[str, object]]:
    return {entry["id"]: entry for entry in selectors.ray_nodes(cluster)}


def recorded(op: ClusterOperation, what: str) -> Response:
    """202: the switch is recorded; the worker carries it out and the operation tells how it went."""
    return Response(
        {
            "success": True,
            "message": f"recorded: {what}; follow GET /api/cluster/operations/{op.pk} for the result",
            "operation": selectors.operation_entry(op),
        },
        status=status.HTTP_202_ACCEPTED,
    )


class DiscoverView(APIView):
    """POST /api/cluster/discover-external: find Ray clusters running on this host and record them."""

    permission_classes = [IsStaff]

    @extend_schema(tags=TAG, request=None, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        found = discovery.discover(settings.CASTRAY_RAY_TEMP_DIRS, settings.CASTRAY_DASHBOARD_PORTS)
        rows = services.discovered_record(found=found)
        active = services.cluster_active()
        alive = [selectors.discovered_entry(r, active) for r in rows if r.alive]
        where = ", ".join(settings.CASTRAY_RAY_TEMP_DIRS)
        return Response(
            {
                "success": True,
                "message": f"found {len(alive)} running Ray cluster(s) on this host (session files in {where})",
                "discovered_clusters": alive,
                "stale_sessions": len(rows) - len(alive),
                "connected_cluster": selectors.cluster_summary(active),
                "external_nodes": external_nodes(active),
            }
        )


class ExternalInfoView(APIView):
    """GET /api/cluster/external-info: the cluster CastRay runs on and its Ray nodes."""

    permission_classes = [StatusReader]

    @extend_schema(tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        active = services.cluster_active()
        last = ClusterOperation.objects.select_related("source", "target", "requested_by").first()
        return Response(
            {
                # Connected to a Ray cluster CastRay did not start (RAY_ADDRESS or connect-external).
                "is_connected": active.status == Cluster.Status.CONNECTED
                and bool(active.address or settings.RAY_ADDRESS),
                "connected_cluster": selectors.cluster_summary(active),
                "external_nodes": external_nodes(active),
                "last_operation": selectors.operation_entry(last) if last else None,
            }
        )


class ExternalNodesView(APIView):
    """GET /api/nodes/external: the Ray nodes of the connected cluster with resources and liveness."""

    permission_classes = [StatusReader]

    @extend_schema(tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        nodes = selectors.ray_nodes(services.cluster_active())
        return Response({"success": True, "external_nodes": nodes, "count": len(nodes)})


class ConnectView(APIView):
    """POST /api/cluster/connect-external {cluster_address}: move CastRay onto that Ray cluster."""

    permission_classes = [IsStaff]

    @extend_schema(
        tags=TAG,
        request=inline_serializer("ConnectExternal", {"cluster_address": serializers.CharField()}),
        responses={202: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request) -> Response:
        address = request.data.get("cluster_address") if isinstance(request.data, dict) else None
        if not isinstance(address, str) or not address.strip():
            raise exceptions.ValidationError(
                {"cluster_address": ["give the Ray cluster's GCS address as host:port, e.g. 10.0.0.5:6379"]}
            )
        op = services.operation_request(kind=ClusterOperation.Kind.CONNECT, address=address, requested_by=request.user)
        return recorded(op, f"the worker moves CastRay to the Ray cluster at {op.address}")


class DisconnectView(APIView):
    """DELETE /api/cluster/disconnect-external: go back to the configured cluster."""

    permission_classes = [IsStaff]

    @extend_schema(tags=TAG, responses={202: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT})
    def delete(self, request: Request) -> Response:
        active = services.cluster_active()
        configured = services.cluster_configured()
        if active.pk == configured.pk:
            raise Conflict(
                "cluster", f"CastRay already runs on its configured cluster ({configured.name}); nothing to disconnect"
            )
        op = services.operation_request(kind=ClusterOperation.Kind.DISCONNECT, requested_by=request.user)
        return recorded(op, f"the worker leaves {active.name} (left running) and returns to {configured.name}")


class RayDashboardView(APIView):
    """GET /api/ray-dashboard: the cluster summary external dashboards read."""

    permission_classes = [StatusReader]

    @extend_schema(tags=TAG, responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        cluster = services.cluster_active()
        return Response(
            {
                "success": True,
                "cluster": selectors.cluster_summary(cluster),
                "dashboard_url": cluster.dashboard_url or None,
                "ray_nodes": selectors.ray_nodes(cluster),
                "totals": selectors.totals(cluster),
                "castray_nodes": selectors.castray_nodes(),
                "updated_at": iso(cluster.worker_seen),
            }
        )
