"""Connecting to Ray. Only the worker imports this module."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from django.conf import settings


class RayUnavailable(Exception):
    """Ray could not be reached; the message says where and why."""


def _precheck(address: str) -> None:
    # ray.init on an unreachable address retries for a long time; a plain TCP connect
    # tells the operator at once that nothing listens there.
    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailable(f"RAY_ADDRESS {address!r} is not host:port")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except OSError as exc:
        raise RayUnavailable(f"cannot reach Ray at {address}: {exc}") from None


def connect(address: str) -> dict[str, Any]:
    """Start a local Ray (empty address) or attach to `address`; return what we see."""
    import ray

    if address:
        _precheck(address)
    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if not address or address in ("auto", current):
            return snapshot()
        # Asked for another cluster than the one this process is attached to.
        ray.shutdown()
    kwargs: dict[str, Any] = {
        "namespace": settings.CASTRAY_RAY_NAMESPACE,
        "log_to_driver": False,
        "ignore_reinit_error": True,
    }
    if settings.CASTRAY_RAY_SHIP_CODE:
        base = Path(settings.BASE_DIR)
        kwargs["runtime_env"] = {"py_modules": [str(base / "nodes"), str(base / "transfers")]}
    try:
        if address:
            # Attach without resource arguments: the cluster's own configuration wins.
            ray.init(address=address, **kwargs)
        else:
            ray.init(address="local", include_dashboard=False, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure to start or attach is "degraded"
        raise RayUnavailable(f"Ray did not start at {address or 'local'}: {exc}") from None
    return snapshot()


def snapshot() -> dict[str, Any]:
    import ray

    nodes = [
        {
            "node_id": n.get("NodeID"),
            "address": n.get("NodeManagerAddress"),
            "alive": bool(n.get("Alive")),
            "resources": n.get("Resources", {}),
        }
        for n in ray.nodes()
    ]
    context = ray.get_runtime_context()
    return {
        "ray_version": ray.__version__,
        "gcs_address": context.gcs_address,
        "resources": ray.cluster_resources(),
        "ray_nodes": nodes,
        "dashboard_url": _dashboard_url(),
    }


def _dashboard_url() -> str:
    try:
        from ray._private.worker import get_dashboard_url

        url = get_dashboard_url() or ""
    except Exception:  # noqa: BLE001 - no dashboard is a normal state
        return ""
    return url if not url or url.startswith("http") else f"http://{url}"
