"""Admin for operators: nodes (enable, disable, placement, limits) and groups with their members."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from nodes.models import Node, NodeGroup
from nodes.services import node_set_enabled


class MembershipInline(admin.TabularInline):
    model = NodeGroup.nodes.through
    extra = 1
    verbose_name = "member"
    verbose_name_plural = "members"
    autocomplete_fields = ["node"]


class GroupsOfNodeInline(admin.TabularInline):
    model = NodeGroup.nodes.through
    extra = 0
    verbose_name = "group"
    verbose_name_plural = "groups"
    autocomplete_fields = ["nodegroup"]


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "enabled",
        "status",
        "address",
        "port",
        "last_heartbeat",
        "ray_node_id",
        "egress_cap",
        "ingress_cap",
        "max_concurrent",
        "peak_rss_mib",
    ]
    list_filter = ["enabled", "status", "groups"]
    search_fields = ["name", "address", "ray_node_id", "status_detail"]
    inlines = [GroupsOfNodeInline]
    # Observed by the worker from heartbeats; people set the rest.
    readonly_fields = [
        "status",
        "status_detail",
        "last_heartbeat",
        "address",
        "port",
        "actor_pid",
        "peak_rss_mib",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["name", "enabled"]}),
        ("Placement and storage", {"fields": ["ray_node_id", "storage_dir", "requested_port"]}),
        ("Limits", {"fields": ["egress_cap", "ingress_cap", "max_concurrent"]}),
        ("Observed by the worker", {"fields": readonly_fields}),
    ]
    actions = ["enable_nodes", "disable_nodes"]

    def save_model(self, request: HttpRequest, obj: Node, form: Any, change: bool) -> None:
        # Switching a node on or off goes through the service (it updates the observed
        # state and tells live pages); the other fields are saved as they are.
        if change and "enabled" in form.changed_data:
            wanted = obj.enabled
            obj.enabled = not wanted
            super().save_model(request, obj, form, change)
            node_set_enabled(node=obj, enabled=wanted)
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Enable selected nodes")
    def enable_nodes(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        changed = [node_set_enabled(node=node, enabled=True) for node in queryset]
        self.message_user(request, f"Enabled {len(changed)} node(s).", messages.SUCCESS)

    @admin.action(description="Disable selected nodes")
    def disable_nodes(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        changed = [node_set_enabled(node=node, enabled=False) for node in queryset]
        self.message_user(request, f"Disabled {len(changed)} node(s).", messages.SUCCESS)


@admin.register(NodeGroup)
class NodeGroupAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "member_count", "created_at"]
    search_fields = ["name", "description", "nodes__name"]
    inlines = [MembershipInline]
    exclude = ["nodes"]  # edited through the members inline
    readonly_fields = ["created_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[NodeGroup]:
        return super().get_queryset(request).annotate(members=Count("nodes"))

    @admin.display(description="members", ordering="members")
    def member_count(self, group: NodeGroup) -> int:
        return group.members  # type: ignore[attr-defined]
