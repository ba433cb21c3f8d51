"""Admin for operators: the clusters the worker connects to, and what it last saw of them."""

from __future__ import annotations

from django.contrib import admin

from clusters.models import Cluster


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    list_display = ["name", "address", "active", "status", "short_error", "ray_version", "worker_id", "worker_seen"]
    list_filter = ["status", "active"]
    search_fields = ["name", "address", "last_error", "worker_id"]
    # Everything below is what the worker records; people set the name, address and `active`.
    readonly_fields = [
        "status",
        "last_error",
        "ray_version",
        "gcs_address",
        "dashboard_url",
        "resources",
        "ray_nodes",
        "worker_id",
        "worker_seen",
        "connected_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["name", "address", "active"]}),
        ("Observed by the worker", {"fields": readonly_fields}),
    ]

    @admin.display(description="last error")
    def short_error(self, cluster: Cluster) -> str:
        return cluster.last_error[:80]
