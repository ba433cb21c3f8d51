from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from nodes.models import Node
from nodes.services import node_set_enabled


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ["name", "enabled", "status", "address", "port", "last_heartbeat", "ray_node_id", "peak_rss_mib"]
    list_filter = ["enabled", "status"]
    search_fields = ["name", "address", "ray_node_id", "status_detail"]
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
    actions = ["enable_nodes", "disable_nodes"]

    @admin.action(description="Enable selected nodes")
    def enable_nodes(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        for node in queryset:
            node_set_enabled(node=node, enabled=True)
        self.message_user(request, f"Enabled {queryset.count()} node(s).", messages.SUCCESS)

    @admin.action(description="Disable selected nodes")
    def disable_nodes(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        for node in queryset:
            node_set_enabled(node=node, enabled=False)
        self.message_user(request, f"Disabled {queryset.count()} node(s).", messages.SUCCESS)
