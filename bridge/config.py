"""What the worker runs with: its run-time configuration and the cluster's signing key.

Operators change some CASTRAY_* settings while CastRay runs (`RuntimeConfig`, see
`clusters.services.CONFIG_SETTINGS`). The worker holds them as one `RunConfig` value and
reads every such setting from it, never from `django.conf.settings`: a value is swapped for
a new one when the record changes, so nothing else in the process (the API, a second
worker) sees a setting change under it.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, fields
from typing import Any

from django.conf import settings

from clusters.models import RuntimeConfig
from clusters.services import CONFIG_SETTINGS, runtime_config_effective
from dataplane.contract import OriginPolicy


@dataclass(frozen=True)
class RunConfig:
    """The settings an operator may change at run time; field names are RuntimeConfig's."""

    chunk_size: int
    default_fan_out: int
    default_egress_cap: int
    default_ingress_cap: int
    node_concurrency: int
    max_active_transfers: int
    demo_enabled: bool
    demo_interval: float
    demo_file_size: int

    @classmethod
    def from_settings(cls) -> RunConfig:
        """The defaults: what the environment set (no database needed)."""
        return cls(**{f.name: getattr(settings, CONFIG_SETTINGS[f.name]) for f in fields(cls)})

    @classmethod
    def load(cls, record: RuntimeConfig | None) -> RunConfig:
        """The defaults with the recorded values over them (a cleared value is the default again)."""
        if record is None:
            return cls.from_settings()
        effective = runtime_config_effective(record)
        return cls(**{f.name: effective[f.name] for f in fields(cls)})

    def changes(self, before: RunConfig) -> dict[str, Any]:
        """The settings whose value differs from `before`, by their CASTRAY_* name (for logs)."""
        return {
            CONFIG_SETTINGS[f.name]: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) != getattr(before, f.name)
        }


def cluster_secret() -> bytes:
    """The key that signs offers between actors; generated once, kept in the data dir."""
    configured = os.environ.get("CASTRAY_CLUSTER_SECRET", "")
    if configured:
        return configured.encode()
    path = settings.DATA_DIR / "cluster_secret"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip().encode()


def origin_policy() -> OriginPolicy:
    """How source actors may fetch origin URLs: the operator's settings, passed with each fetch."""
    return OriginPolicy(
        allow_private=settings.CASTRAY_ORIGIN_ALLOW_PRIVATE,
        cache_bytes=settings.CASTRAY_ORIGIN_CACHE_SIZE,
        timeout=settings.CASTRAY_ORIGIN_TIMEOUT,
        s3_endpoint=settings.CASTRAY_S3_ENDPOINT_URL,
    )
