"""The resource API for nodes (staff manage, users read) and node groups."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from castray_site.permissions import StaffWritesOrReadOnly
from nodes.edit_services import group_create, group_delete, group_update, node_register, node_update
from nodes.models import Node, NodeGroup
from nodes.serializers import NodeGroupSerializer, NodeSerializer, NodeUpdateSerializer
from nodes.services import node_set_enabled
from transfers.models import Delivery
from transfers.serializers import InboxSerializer

# Node and group names may contain dots, which the router's default lookup pattern refuses.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"


class NodeViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Node.objects.prefetch_related("groups")
    serializer_class = NodeSerializer
    permission_classes = [StaffWritesOrReadOnly]
    lookup_field = "name"
    lookup_value_regex = NAME_PATTERN
    filterset_fields = ["status", "enabled"]
    ordering_fields = ["name", "created_at", "status"]

    def get_serializer_class(self) -> type[BaseSerializer]:
        if self.action in ("update", "partial_update"):
            return NodeUpdateSerializer
        if self.action == "inbox":
            return InboxSerializer
        return NodeSerializer

    def perform_create(self, serializer: BaseSerializer) -> None:
        data = serializer.validated_data
        serializer.instance = node_register(
            name=data["name"],
            enabled=data.get("enabled", True),
            ray_node_id=data.get("ray_node_id", ""),
            storage_dir=data.get("storage_dir", ""),
            port=data.get("requested_port"),
            egress_cap=data.get("egress_cap"),
            ingress_cap=data.get("ingress_cap"),
            max_concurrent=data.get("max_concurrent"),
        )

    def perform_update(self, serializer: BaseSerializer) -> None:
        serializer.instance = node_update(node=serializer.instance, **serializer.validated_data)

    @extend_schema(request=None, responses=NodeSerializer)
    @action(detail=True, methods=["post"])
    def enable(self, request: Request, name: str | None = None) -> Response:
        """Enable a node: the worker starts its actor."""
        node = node_set_enabled(node=self.get_object(), enabled=True)
        return Response(NodeSerializer(node, context=self.get_serializer_context()).data)

    @extend_schema(request=None, responses=NodeSerializer)
    @action(detail=True, methods=["post"])
    def disable(self, request: Request, name: str | None = None) -> Response:
        """Disable a node: the worker stops its actor; casts to it fail with the reason."""
        node = node_set_enabled(node=self.get_object(), enabled=False)
        return Response(NodeSerializer(node, context=self.get_serializer_context()).data)

    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=Delivery.Status.values, description="Only these.")],
        responses=InboxSerializer(many=True),
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def inbox(self, request: Request, name: str | None = None) -> Response:
        """Messages cast to this node, newest first."""
        # Not get_object(): the query's `status` filters deliveries here, not nodes.
        node = get_object_or_404(Node, name=name)
        deliveries: QuerySet[Delivery] = (
            Delivery.objects.filter(node=node)
            .select_related("message", "message__sender")
            .order_by("-message__created_at", "-id")
        )
        wanted = request.query_params.get("status")
        if wanted:
            if wanted not in Delivery.Status.values:
                raise ValidationError({"status": [f"status must be one of {', '.join(Delivery.Status.values)}"]})
            deliveries = deliveries.filter(status=wanted)
        page = self.paginate_queryset(deliveries)
        return self.get_paginated_response(InboxSerializer(page, many=True).data)


class NodeGroupViewSet(viewsets.ModelViewSet):
    """Named sets of nodes a multicast can target. Staff manage them; members are given by name."""

    queryset = NodeGroup.objects.prefetch_related("nodes")
    serializer_class = NodeGroupSerializer
    permission_classes = [StaffWritesOrReadOnly]
    lookup_field = "name"
    lookup_value_regex = NAME_PATTERN
    filterset_fields = ["name"]
    ordering_fields = ["name", "created_at"]

    def perform_create(self, serializer: BaseSerializer) -> None:
        data = serializer.validated_data
        serializer.instance = group_create(
            name=data["name"], description=data.get("description", ""), nodes=data.get("nodes", [])
        )

    def perform_update(self, serializer: BaseSerializer) -> None:
        data = serializer.validated_data
        serializer.instance = group_update(
            group=serializer.instance,
            name=data.get("name"),
            description=data.get("description"),
            nodes=data.get("nodes"),
        )

    def perform_destroy(self, instance: NodeGroup) -> None:
        group_delete(group=instance)
