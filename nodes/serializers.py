from __future__ import annotations

from pathlib import PurePath
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from castray_site.env import parse_size
from dataplane.generator import CONTENT_TYPES, PRESETS
from dataplane.storage import UnsafePath, clean_name
from nodes.models import Node, NodeGroup, node_name_validator
from transfers.models import Transfer

NODE_DOES_NOT_EXIST = "no node named {value}; GET /api/v1/nodes/ lists them"
GROUP_DOES_NOT_EXIST = "no group named {value}; GET /api/v1/groups/ lists them"


def validated_file_name(value: str) -> str:
    """A client's file name in its normal form (`clean_name`), or the reason as the field's error."""
    try:
        return clean_name(value)
    except UnsafePath as exc:
        raise serializers.ValidationError(str(exc)) from None


class _NameField(serializers.SlugRelatedField):
    """A node or group given by its name (both follow `node_name_validator`)."""

    def to_internal_value(self, data: Any) -> Any:
        # A name no row can have is not looked up: PostgreSQL refuses a query with a NUL in it.
        if isinstance(data, str) and not node_name_validator.regex.fullmatch(data):
            self.fail("does_not_exist", slug_name=self.slug_field, value=data)
        return super().to_internal_value(data)


class NodeNameField(_NameField):
    """A node given by its name, with a message that says where to find the names."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("slug_field", "name")
        if not kwargs.get("read_only"):
            kwargs.setdefault("queryset", Node.objects.all())
        kwargs.setdefault("error_messages", {"does_not_exist": NODE_DOES_NOT_EXIST, "invalid": "give a node name"})
        super().__init__(**kwargs)


class GroupNameField(_NameField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("slug_field", "name")
        if not kwargs.get("read_only"):
            kwargs.setdefault("queryset", NodeGroup.objects.all())
        kwargs.setdefault("error_messages", {"does_not_exist": GROUP_DOES_NOT_EXIST, "invalid": "give a group name"})
        super().__init__(**kwargs)


class NodeSerializer(serializers.ModelSerializer):
    port = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=65535,
        source="requested_port",
        help_text="Port the node's actor should listen on; empty: any free port.",
    )
    listen_port = serializers.IntegerField(
        source="port", read_only=True, allow_null=True, help_text="Port it listens on now; empty when not running."
    )
    groups = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)

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
            "egress_cap",
            "ingress_cap",
            "max_concurrent",
            "groups",
            "actor_pid",
            "peak_rss_mib",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "status",
            "status_detail",
            "last_heartbeat",
            "address",
            "listen_port",
            "actor_pid",
            "peak_rss_mib",
            "created_at",
            "updated_at",
        ]

    def validate_storage_dir(self, value: str) -> str:
        if value and not PurePath(value).is_absolute():
            raise serializers.ValidationError("give an absolute path, or leave it empty for the data directory")
        return value


class NodeUpdateSerializer(NodeSerializer):
    """Changing a node: its name is its identity (storage, actor), and enabling is an action."""

    class Meta(NodeSerializer.Meta):
        read_only_fields = [*NodeSerializer.Meta.read_only_fields, "name", "enabled"]


class NodeGroupSerializer(serializers.ModelSerializer):
    nodes = NodeNameField(many=True, required=False, help_text="Names of the member nodes.")

    class Meta:
        model = NodeGroup
        fields = ["id", "name", "description", "nodes", "created_at"]
        read_only_fields = ["created_at"]


class FileInfoSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="Path relative to the node's storage.")
    size = serializers.IntegerField()
    modified = serializers.DateTimeField()
    sha256 = serializers.CharField(
        allow_null=True, help_text="Empty until the file was hashed (at upload, generation or its first cast)."
    )
    partial = serializers.BooleanField(help_text="A file still being received (`<name>.part`).")
    download_url = serializers.CharField()

    class Meta:
        fields = ["name", "size", "modified", "sha256", "partial", "download_url"]


class FileListQuerySerializer(serializers.Serializer):
    hash = serializers.BooleanField(
        default=False, help_text="Compute the SHA-256 of files not hashed yet (slow for big files)."
    )

    class Meta:
        fields = ["hash"]


class FileUploadSerializer(serializers.Serializer):
    file = serializers.FileField(allow_empty_file=True, help_text="The file's bytes (multipart/form-data).")
    name = serializers.CharField(
        required=False, help_text="Path relative to the node's storage; default: the uploaded file's name."
    )
    overwrite = serializers.BooleanField(default=False, help_text="Replace a file of the same name.")

    class Meta:
        fields = ["file", "name", "overwrite"]


@extend_schema_field({"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "example": "10MB"}]})
class SizeField(serializers.Field):
    """A size: bytes as a number, or text with a 1024-based unit (`10MB`, `1.5GiB`)."""

    default_error_messages = {"invalid": "give a size such as 1048576, 10MB or 1.5GiB"}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, int):
            if data < 0:
                self.fail("invalid")
            return data
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            return parse_size(data)
        except (ValueError, OverflowError) as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value: int) -> int:
        return value


class CastOptionsSerializer(serializers.Serializer):
    """Where to cast a file right after it is made: target names, a group, or every online node."""

    targets = NodeNameField(many=True, required=False)
    group = GroupNameField(required=False, allow_null=True)
    broadcast = serializers.BooleanField(default=False)
    mode = serializers.ChoiceField(choices=Transfer.Mode.choices, default=Transfer.Mode.TCP)
    fan_out = serializers.IntegerField(default=0, min_value=0, max_value=64)
    priority = serializers.IntegerField(default=0, min_value=-1000, max_value=1000)

    class Meta:
        fields = ["targets", "group", "broadcast", "mode", "fan_out", "priority"]


class FileGenerateSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="Path relative to the node's storage.")
    size = SizeField(required=False, help_text="Bytes, or with a 1024-based unit: 10MB, 1.5GiB.")
    preset = serializers.ChoiceField(choices=list(PRESETS), required=False, help_text="Instead of size.")
    content = serializers.ChoiceField(choices=list(CONTENT_TYPES), default="random")
    overwrite = serializers.BooleanField(default=False)
    cast = CastOptionsSerializer(required=False, help_text="Cast the file as soon as it is written.")

    class Meta:
        fields = ["name", "size", "preset", "content", "overwrite", "cast"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("size" in attrs) == ("preset" in attrs):
            raise serializers.ValidationError({"size": "give either a size or a preset"})
        if "preset" in attrs:
            attrs["size"] = PRESETS[attrs["preset"]]["size_bytes"]
        return attrs
