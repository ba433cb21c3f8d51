from __future__ import annotations

from typing import Any

from rest_framework import serializers

from nodes.files import source_file_problem
from nodes.serializers import FileInfoSerializer, GroupNameField, NodeNameField, validated_file_name
from transfers.models import Delivery, Message, Target, Transfer, TransferFile
from transfers.services.origins import origin_check
from transfers.services.targets import CastError


class TargetSerializer(serializers.ModelSerializer):
    node = serializers.SlugRelatedField(slug_field="name", read_only=True)
    parent = serializers.SlugRelatedField(
        slug_field="name",
        read_only=True,
        allow_null=True,
        help_text="The node it receives from in the distribution tree; empty before the cast starts.",
    )
    duration = serializers.FloatField(read_only=True, allow_null=True, help_text="Seconds from start to finish.")
    vs_bound = serializers.FloatField(
        read_only=True, allow_null=True, help_text="Its time over its lower bound (bound_seconds); 1.0 is the best."
    )

    class Meta:
        model = Target
        fields = [
            "id",
            "node",
            "status",
            "bytes_done",
            "bytes_received",
            "rate",
            "parent",
            "started_at",
            "finished_at",
            "error",
            "attempts",
            "files_done",
            "files_skipped",
            "bytes_skipped",
            "duration",
            "bound_seconds",
            "vs_bound",
        ]
        read_only_fields = fields


class TargetDetailSerializer(TargetSerializer):
    """A target on its own (GET /api/v1/targets/): says which transfer it belongs to."""

    class Meta(TargetSerializer.Meta):
        fields = ["transfer", *TargetSerializer.Meta.fields]
        read_only_fields = fields


class TransferSerializer(serializers.ModelSerializer):
    source = NodeNameField()
    targets = NodeNameField(
        many=True,
        required=False,
        write_only=True,
        help_text="Names of the target nodes. Give targets, a group, or broadcast.",
    )
    group = GroupNameField(required=False, allow_null=True, help_text="Cast to the enabled members of this group.")
    broadcast = serializers.BooleanField(
        required=False, default=False, write_only=True, help_text="Cast to every online node but the source."
    )
    fan_out = serializers.IntegerField(
        required=False, default=0, min_value=0, max_value=64, help_text="Children per relay; 0: the default."
    )
    priority = serializers.IntegerField(required=False, default=0, min_value=-1000, max_value=1000)
    dest_name = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Name at the targets; empty: file_name."
    )
    file_name = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=1024,
        help_text="The file in the source's storage; with origin, the name it is fetched to "
        "(default: the URL's last path segment).",
    )
    origin = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=4096,
        help_text="An http(s):// or s3://bucket/key URL the source fetches once, then casts. "
        "Recorded without user-info, signatures or tokens.",
    )
    recipients = TargetSerializer(source="targets", many=True, read_only=True)
    duration = serializers.FloatField(
        read_only=True, allow_null=True, help_text="Seconds from start to finish; empty until it finished."
    )
    rate = serializers.FloatField(
        read_only=True,
        allow_null=True,
        help_text="Bytes per second the targets that received the file got; null if no copy was delivered.",
    )
    vs_bound = serializers.FloatField(
        read_only=True, allow_null=True, help_text="The cast's time over the Kumar-Ross bound (bound_seconds)."
    )
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Transfer
        fields = [
            "id",
            "source",
            "file_name",
            "origin",
            "dest_name",
            "mirror",
            "is_directory",
            "files",
            "targets",
            "group",
            "broadcast",
            "recipients",
            "cast_type",
            "mode",
            "fan_out",
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
            "bound_seconds",
            "vs_bound",
        ]
        read_only_fields = [
            "cast_type",
            "status",
            "size",
            "sha256",
            "is_directory",
            "files",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "source_bytes_sent",
            "relay_bytes_sent",
            "attempts",
            "tree",
            "bound_seconds",
        ]

    def validate_file_name(self, value: str) -> str:
        if not value:
            return value  # allowed with an origin; validate() asks for one otherwise
        return validated_file_name(value)

    def validate_dest_name(self, value: str) -> str:
        # Here as well as in transfer_create: a bad dest_name is reported with the other field
        # errors, before the source's file is looked at.
        return validated_file_name(value) if value else ""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("origin"):
            try:
                attrs["origin"], attrs["file_name"] = origin_check(
                    url=attrs["origin"], file_name=attrs.get("file_name", "")
                )
            except CastError as exc:
                raise serializers.ValidationError({exc.field: exc.message}) from None
            return attrs  # the file does not exist yet: the source fetches it when the cast starts
        if not attrs.get("file_name"):
            raise serializers.ValidationError({"file_name": "give a file_name, or an origin URL to fetch"})
        # Where the source's storage is on this host, the file is checked now (symlinks too);
        # elsewhere its actor checks when the cast starts.
        problem = source_file_problem(attrs["source"], attrs["file_name"])
        if problem:
            raise serializers.ValidationError({"file_name": problem})
        return attrs


class TransferFileSerializer(serializers.ModelSerializer):
    """One file of a directory cast, as the source's manifest named it when the cast started."""

    class Meta:
        model = TransferFile
        fields = ["path", "size", "sha256"]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    node = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Delivery
        fields = ["id", "node", "status", "delivered_at", "error"]
        read_only_fields = fields


class MessageSerializer(serializers.ModelSerializer):
    sender = NodeNameField()
    message_type = serializers.ChoiceField(source="kind", choices=Message.Kind.choices, default=Message.Kind.TEXT)
    content = serializers.CharField(trim_whitespace=False, help_text="Text, or JSON text when message_type is json.")
    targets = NodeNameField(
        many=True, required=False, write_only=True, help_text="Recipient names. Give targets, a group, or broadcast."
    )
    group = GroupNameField(required=False, allow_null=True)
    broadcast = serializers.BooleanField(required=False, default=False, write_only=True)
    deliveries = DeliverySerializer(many=True, read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "sender",
            "message_type",
            "content",
            "targets",
            "group",
            "broadcast",
            "cast_type",
            "status",
            "error",
            "deliveries",
            "created_at",
            "delivered_at",
            "requested_by",
        ]
        read_only_fields = ["cast_type", "status", "error", "created_at", "delivered_at"]


class InboxSerializer(serializers.ModelSerializer):
    """A message as one recipient node holds it."""

    message = serializers.IntegerField(source="message_id", read_only=True)
    sender = serializers.CharField(source="message.sender.name", read_only=True)
    message_type = serializers.CharField(source="message.kind", read_only=True)
    cast_type = serializers.CharField(source="message.cast_type", read_only=True)
    content = serializers.CharField(source="message.content", read_only=True)
    sent_at = serializers.DateTimeField(source="message.created_at", read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "message",
            "sender",
            "message_type",
            "cast_type",
            "content",
            "status",
            "sent_at",
            "delivered_at",
            "error",
        ]
        read_only_fields = fields


class GeneratedFileSerializer(serializers.Serializer):
    file = FileInfoSerializer()
    transfer = TransferSerializer(allow_null=True, help_text="The cast, when one was asked for.")

    class Meta:
        fields = ["file", "transfer"]


class PresetSerializer(serializers.Serializer):
    size_bytes = serializers.IntegerField()
    size_formatted = serializers.CharField()
    description = serializers.CharField()

    class Meta:
        fields = ["size_bytes", "size_formatted", "description"]


class PresetsSerializer(serializers.Serializer):
    presets = serializers.DictField(child=PresetSerializer())
    content_types = serializers.ListField(child=serializers.CharField())

    class Meta:
        fields = ["presets", "content_types"]
