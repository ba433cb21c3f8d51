"""Cluster records (/api/v1/clusters/), the switch operations the worker carries out
(/api/cluster/operations), and adoption of Ray nodes (/api/cluster/adopt-ray-nodes).

None calls Ray: they read what the worker recorded, or record what it should do.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from castray_site.errors import Conflict
from castray_site.permissions import IsStaff, StatusReader
from clusters import selectors, services
from clusters.models import Cluster, ClusterOperation
from clusters.serializers import ClusterSerializer

TAG = ["clusters"]


class ClusterViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Cluster.objects.all()
    serializer_class = ClusterSerializer
    filterset_fields = ["status", "active"]


class OperationListView(APIView):
    """GET /api/cluster/operations: the 50 latest cluster switches and their results."""

    permission_classes = [StatusReader]

    @extend_schema(tags=TAG, operation_id="cluster_operations_list", responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        ops = ClusterOperation.objects.select_related("source", "target", "requested_by")[:50]
        return Response({"operations": [selectors.operation_entry(op) for op in ops]})


class OperationView(APIView):
    """GET /api/cluster/operations/<id>: one switch: pending, running, succeeded or failed, and why."""

    permission_classes = [StatusReader]

    @extend_schema(tags=TAG, responses={200: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: int) -> Response:
        op = get_object_or_404(ClusterOperation.objects.select_related("source", "target", "requested_by"), pk=pk)
        return Response(selectors.operation_entry(op))


class AdoptView(APIView):
    """POST /api/cluster/adopt-ray-nodes: one CastRay node, pinned to it, for every Ray node without one."""

    permission_classes = [IsStaff]

    @extend_schema(tags=TAG, request=None, responses={201: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        cluster = services.cluster_active()
        alive = [r for r in cluster.ray_nodes if r.get("alive")]
        if not alive:
            raise Conflict(
                "cluster",
                f"no live Ray node is recorded for {cluster.name} ({cluster.status}); "
                "the worker records them once it is connected",
            )
        made = services.nodes_adopt(cluster=cluster)
        return Response(
            {
                "success": True,
                "message": f"adopted {len(made)} of {len(alive)} live Ray node(s); the others already had a node",
                "nodes": [{"name": n.name, "ray_node_id": n.ray_node_id} for n in made],
            },
            status=status.HTTP_201_CREATED,
        )
