from __future__ import annotations

from rest_framework import permissions, viewsets
from rest_framework.serializers import BaseSerializer

from nodes.models import Node
from nodes.serializers import NodeSerializer
from nodes.services import node_create


class StaffWritesOrReadOnly(permissions.BasePermission):
    """Authenticated users read; only staff create or change nodes."""

    def has_permission(self, request, view) -> bool:  # type: ignore[no-untyped-def]
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in permissions.SAFE_METHODS or request.user.is_staff


class NodeViewSet(viewsets.ModelViewSet):
    queryset = Node.objects.all()
    serializer_class = NodeSerializer
    permission_classes = [StaffWritesOrReadOnly]
    lookup_field = "name"
    filterset_fields = ["status", "enabled"]
    ordering_fields = ["name", "created_at", "status"]
    http_method_names = ["get", "post", "head", "options"]

    def perform_create(self, serializer: BaseSerializer) -> None:
        data = serializer.validated_data
        serializer.instance = node_create(
            name=data["name"],
            enabled=data.get("enabled", True),
            ray_node_id=data.get("ray_node_id", ""),
            storage_dir=data.get("storage_dir", ""),
            port=data.get("requested_port"),
        )
