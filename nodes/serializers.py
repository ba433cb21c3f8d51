from __future__ import annotations

from rest_framework import serializers

from nodes.models import Node


class NodeSerializer(serializers.ModelSerializer):
    port = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=65535, source="requested_port", write_only=True
    )
    listen_port = serializers.IntegerField(source="port", read_only=True)

    class Meta:
        model = Node
        fields = [
            "id",
            "name",
            "enabled",
            "status",
            "status_detail",
            "last_heartbeat",
            "ray_node_id",
            "storage_dir",
            "address",
            "listen_port",
            "port",
            "peak_rss_mib",
            "created_at",
        ]
        read_only_fields = [
            "status",
            "status_detail",
            "last_heartbeat",
            "address",
            "listen_port",
            "peak_rss_mib",
            "created_at",
        ]
