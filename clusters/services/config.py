"""Run-time configuration: recorded values over the CASTRAY_* defaults, applied by the workers."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from clusters.models import RuntimeConfig
from clusters.services.operations import OperationError

CONFIG_SETTINGS = {
    "chunk_size": "CASTRAY_CHUNK_SIZE",
    "default_fan_out": "CASTRAY_DEFAULT_FAN_OUT",
    "default_egress_cap": "CASTRAY_DEFAULT_EGRESS_CAP",
    "default_ingress_cap": "CASTRAY_DEFAULT_INGRESS_CAP",
    "node_concurrency": "CASTRAY_DEFAULT_NODE_CONCURRENCY",
    "max_active_transfers": "CASTRAY_MAX_ACTIVE_TRANSFERS",
    "demo_enabled": "CASTRAY_DEMO_MODE",
    "demo_interval": "CASTRAY_DEMO_INTERVAL",
    "demo_file_size": "CASTRAY_DEMO_FILE_SIZE",
}


def runtime_config_effective(config: RuntimeConfig | None = None) -> dict[str, Any]:
    """Each setting's value now: the recorded one, or the CASTRAY_* default."""
    config = config or RuntimeConfig.objects.filter(pk=1).first()
    out = {}
    for field, name in CONFIG_SETTINGS.items():
        value = getattr(config, field, None) if config is not None else None
        out[field] = value if value is not None else getattr(settings, name)
    return out


@transaction.atomic
def runtime_config_update(*, changes: dict[str, Any], user: AbstractBaseUser | None = None) -> RuntimeConfig:
    """Record new values (None: back to the default). Validation happens in the caller's serializer."""
    config = RuntimeConfig.objects.select_for_update().get_or_create(pk=1)[0]
    for field, value in changes.items():
        if field not in CONFIG_SETTINGS:
            raise OperationError(field, f"{field} cannot be configured; use one of {', '.join(CONFIG_SETTINGS)}")
        setattr(config, field, value)
    config.updated_by = user if user is not None and user.is_authenticated else None
    config.save()
    return config
