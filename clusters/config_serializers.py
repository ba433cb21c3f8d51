"""Input of POST /ray/configure and POST /api/demo: each field optional, null puts the default back."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from castray_site.env import format_size, parse_size


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string", "example": "8MiB"}], "nullable": True})
class SizeField(serializers.Field):
    """Bytes, given as a number or with a unit (`8MiB`, `64KB`; 1024-based)."""

    def __init__(self, *, minimum: int = 0, maximum: int | None = None, **kwargs: Any) -> None:
        self.minimum = minimum
        self.maximum = maximum
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool):
            raise serializers.ValidationError("give a size such as 4MiB or a number of bytes")
        try:
            value = int(data) if isinstance(data, int) else parse_size(str(data))
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            if self.maximum is None:
                raise serializers.ValidationError(f"must be at least {format_size(self.minimum)}; {value} is not")
            span = f"{format_size(self.minimum)} and {format_size(self.maximum)}"
            raise serializers.ValidationError(f"must be between {span}; {format_size(value)} is not")
        return value

    def to_representation(self, value: Any) -> Any:
        return value


def _int(minimum: int, maximum: int, help_text: str) -> serializers.IntegerField:
    return serializers.IntegerField(
        required=False, allow_null=True, min_value=minimum, max_value=maximum, help_text=help_text
    )


class ConfigureSerializer(serializers.Serializer):
    chunk_size = SizeField(minimum=64 * 1024, maximum=64 * 1024 * 1024, help_text="Bytes per chunk (64KiB-64MiB).")
    default_fan_out = _int(1, 64, "Children per relay when a cast does not say.")
    default_egress_cap = SizeField(help_text="Bytes/s a node sends when it has no cap of its own; 0: unlimited.")
    default_ingress_cap = SizeField(help_text="Bytes/s a node receives when it has no cap of its own; 0: unlimited.")
    node_concurrency = _int(1, 1000, "Casts a node takes part in at once when it has no limit of its own.")
    max_active_transfers = _int(1, 1000, "Casts each worker runs at once.")
    demo_enabled = serializers.BooleanField(required=False, allow_null=True)
    demo_interval = serializers.FloatField(required=False, allow_null=True, min_value=1.0, max_value=86400.0)
    demo_file_size = SizeField(minimum=1, maximum=1024**3, help_text="Bytes per demo file (at most 1GiB).")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError(
                {name: [f"not a setting; use one of {', '.join(self.fields)}"] for name in sorted(unknown)}
            )
        if not attrs:
            raise serializers.ValidationError({"non_field_errors": ["give at least one setting to change"]})
        return attrs


class DemoSerializer(serializers.Serializer):
    enabled = serializers.BooleanField(help_text="Start or stop the demo casts.")
    interval = serializers.FloatField(required=False, allow_null=True, min_value=1.0, max_value=86400.0)
    file_size = SizeField(minimum=1, maximum=1024**3)
