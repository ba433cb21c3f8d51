from __future__ import annotations

from rest_framework import serializers

from clusters.models import Cluster


class ClusterSerializer(serializers.ModelSerializer):
    class Meta:
        model = Cluster
        fields = [
            "id",
            "name",
            "address",
            "active",
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
        read_only_fields = fields
