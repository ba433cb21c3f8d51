from django.contrib import admin

from clusters.models import Cluster


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    list_display = ["name", "address", "active", "status", "ray_version", "worker_id", "worker_seen", "updated_at"]
    list_filter = ["status", "active"]
    search_fields = ["name", "address", "last_error"]
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
