"""Request shapes of the earlier CastRay's endpoints (their field names), validated like the rest."""

from __future__ import annotations

import json
from typing import Any

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from dataplane.generator import CONTENT_TYPES, PRESETS
from nodes.files import source_file_problem
from nodes.models import node_name_validator
from nodes.serializers import GroupNameField, NodeNameField, SizeField, validated_file_name
from transfers.models import Message, Transfer

# The OpenAPI tag of the old endpoints, and their common answer.
TAG = ["compatibility"]
Result = inline_serializer(
    "CompatResult", fields={"success": serializers.BooleanField(), "message": serializers.CharField()}
)


class CompatNodeCreateSerializer(serializers.Serializer):
    node_id = serializers.CharField(max_length=63, validators=[node_name_validator])
    port = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=65535, help_text="0 or empty: any free port."
    )

    class Meta:
        fields = ["node_id", "port"]


class CompatSendSerializer(serializers.Serializer):
    cast_type = serializers.ChoiceField(choices=Transfer.Cast.choices, default=Transfer.Cast.UNICAST)
    message_type = serializers.ChoiceField(choices=Message.Kind.choices, default=Message.Kind.TEXT)
    content = serializers.JSONField(help_text="A string; for message_type json, any JSON value or JSON text.")
    sender = NodeNameField(help_text="Name of the sending node.")
    recipients = NodeNameField(many=True, required=False, help_text="Recipient names (unicast: exactly one).")
    group_id = GroupNameField(required=False, allow_null=True, help_text="For multicast: a group's name.")

    class Meta:
        fields = ["cast_type", "message_type", "content", "sender", "recipients", "group_id"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        content = attrs["content"]
        if attrs["message_type"] == Message.Kind.TEXT:
            if not isinstance(content, str):
                raise serializers.ValidationError({"content": "for message_type text, send the text as a string"})
        elif not isinstance(content, str):
            attrs["content"] = json.dumps(content)
        recipients = attrs.get("recipients") or []
        group = attrs.get("group_id")
        cast = attrs["cast_type"]
        if cast == Transfer.Cast.UNICAST:
            if len(recipients) != 1 or group is not None:
                raise serializers.ValidationError(
                    {"recipients": "unicast sends to exactly one recipient; use multicast for several or a group"}
                )
            attrs["choice"] = {"targets": recipients}
        elif cast == Transfer.Cast.MULTICAST:
            if bool(recipients) == (group is not None):
                raise serializers.ValidationError({"recipients": "multicast needs either recipients or a group_id"})
            attrs["choice"] = {"group": group} if group is not None else {"targets": recipients}
        else:
            attrs["choice"] = {"broadcast": True}
        return attrs


class CompatMessagesQuerySerializer(serializers.Serializer):
    count = serializers.IntegerField(default=50, min_value=1, max_value=1000)

    class Meta:
        fields = ["count"]


class CompatManualTransferSerializer(serializers.Serializer):
    sender_id = NodeNameField(help_text="Name of the source node.")
    file_name = serializers.CharField(max_length=1024, help_text="Path in the source node's storage.")
    recipients = NodeNameField(many=True, allow_empty=False, help_text="Names of the target nodes.")
    mode = serializers.ChoiceField(choices=Transfer.Mode.choices, default=Transfer.Mode.TCP)

    class Meta:
        fields = ["sender_id", "file_name", "recipients", "mode"]

    def validate_file_name(self, value: str) -> str:
        return validated_file_name(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        problem = source_file_problem(attrs["sender_id"], attrs["file_name"])
        if problem:
            raise serializers.ValidationError({"file_name": problem})
        return attrs


class CompatAutoToggleSerializer(serializers.Serializer):
    node_id = NodeNameField()
    enabled = serializers.BooleanField()

    class Meta:
        fields = ["node_id", "enabled"]


class _GenerateFields(serializers.Serializer):
    size = SizeField(required=False, help_text='"10MB", "1.5GiB" or bytes (units are 1024-based).')
    preset = serializers.ChoiceField(choices=list(PRESETS), required=False, help_text="Instead of size.")
    content_type = serializers.ChoiceField(choices=list(CONTENT_TYPES), default="random")
    file_name = serializers.CharField(required=False, max_length=1024, help_text="Default: a generated name.")
    overwrite = serializers.BooleanField(default=False)

    class Meta:
        fields = ["size", "preset", "content_type", "file_name", "overwrite"]

    def validate_file_name(self, value: str) -> str:
        return validated_file_name(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "size" not in attrs and "preset" not in attrs:
            raise serializers.ValidationError({"size": 'give a size such as "10MB", or a preset'})
        if "size" in attrs and "preset" in attrs:
            raise serializers.ValidationError({"size": "give a size or a preset, not both"})
        if "preset" in attrs:
            attrs["size"] = PRESETS[attrs["preset"]]["size_bytes"]
        return attrs


class CompatGenerateSerializer(_GenerateFields):
    node_id = NodeNameField(required=False, help_text="The node whose storage gets the file.")
    node = NodeNameField(required=False, help_text="Same as node_id.")

    class Meta:
        fields = [*_GenerateFields.Meta.fields, "node_id", "node"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        node = attrs.pop("node", None)
        attrs["node_id"] = attrs.get("node_id") or node
        if attrs["node_id"] is None:
            raise serializers.ValidationError({"node_id": "name the node whose storage gets the file"})
        return attrs


class CompatGenerateAndTransferSerializer(_GenerateFields):
    sender_id = NodeNameField(help_text="The node that gets the file and casts it.")
    recipients = NodeNameField(many=True, allow_empty=False, help_text="Names of the target nodes.")
    mode = serializers.ChoiceField(choices=Transfer.Mode.choices, default=Transfer.Mode.TCP)

    class Meta:
        fields = [*_GenerateFields.Meta.fields, "sender_id", "recipients", "mode"]
