from __future__ import annotations

from pathlib import Path
from typing import Any

from rest_framework import serializers

from nodes.models import Node
from nodes.storage import UnsafePath, clean_name, resolve_in
from transfers.models import Target, Transfer


class TargetSerializer(serializers.ModelSerializer):
    node = serializers.SlugRelatedField(slug_field="name", read_only=True)
    parent = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Target
        fields = [
            "id",
            "node",
            "status",
            "bytes_done",
            "rate",
            "parent",
            "started_at",
            "finished_at",
            "error",
            "attempts",
        ]
        read_only_fields = fields


class TransferSerializer(serializers.ModelSerializer):
    source = serializers.SlugRelatedField(slug_field="name", queryset=Node.objects.all())
    targets = serializers.SlugRelatedField(
        slug_field="name",
        queryset=Node.objects.all(),
        many=True,
        write_only=True,
        help_text="Names of the target nodes.",
    )
    recipients = TargetSerializer(source="targets", many=True, read_only=True)
    duration = serializers.FloatField(read_only=True, help_text="Seconds from start to finish.")
    rate = serializers.FloatField(read_only=True, help_text="Bytes per second of the whole cast.")
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Transfer
        fields = [
            "id",
            "source",
            "file_name",
            "targets",
            "recipients",
            "mode",
            "priority",
            "status",
            "size",
            "sha256",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "duration",
            "rate",
            "source_bytes_sent",
            "relay_bytes_sent",
            "attempts",
            "tree",
            "requested_by",
        ]
        read_only_fields = [
            "status",
            "size",
            "sha256",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "source_bytes_sent",
            "relay_bytes_sent",
            "attempts",
            "tree",
        ]

    def validate_file_name(self, value: str) -> str:
        try:
            return clean_name(value)
        except UnsafePath as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        source: Node = attrs["source"]
        root = Path(source.storage_root)
        # Where the source's storage is on this host, symlinks are checked here too; the
        # actor checks again where the file really is.
        if root.is_dir():
            try:
                path = resolve_in(root, attrs["file_name"])
            except UnsafePath as exc:
                raise serializers.ValidationError({"file_name": str(exc)}) from None
            if not path.is_file():
                raise serializers.ValidationError(
                    {"file_name": f"{attrs['file_name']} does not exist in {source.name}'s storage"}
                )
        return attrs
