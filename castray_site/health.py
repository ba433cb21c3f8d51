"""Liveness and readiness: the database, the channel layer, the worker and Ray."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from clusters.models import Cluster


def health(request: HttpRequest) -> JsonResponse:
    checks: dict[str, dict[str, object]] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = {"ok": True}
    except Exception as exc:  # noqa: BLE001 - health reports, never raises
        checks["database"] = {"ok": False, "error": str(exc)}
    try:
        layer = get_channel_layer()
        async_to_sync(layer.group_send)("health", {"type": "health.ping"})
        checks["channel_layer"] = {"ok": True, "backend": type(layer).__name__}
    except Exception as exc:  # noqa: BLE001
        checks["channel_layer"] = {"ok": False, "error": str(exc)}
    cluster = Cluster.objects.filter(active=True).first() if checks["database"]["ok"] else None
    if cluster is None:
        checks["worker"] = {"ok": False, "error": "no worker has reported yet"}
        checks["ray"] = {"ok": False, "error": "no worker has reported yet"}
    else:
        age = (timezone.now() - cluster.worker_seen).total_seconds() if cluster.worker_seen else None
        limit = max(30.0, settings.CASTRAY_HEARTBEAT_SECONDS * 10)
        checks["worker"] = {"ok": age is not None and age < limit, "last_seen_seconds": age, "id": cluster.worker_id}
        checks["ray"] = {
            "ok": cluster.status == Cluster.Status.CONNECTED,
            "status": cluster.status,
            "error": cluster.last_error,
        }
    # Live when the database answers; ready when everything does.
    live = checks["database"]["ok"]
    ready = all(c["ok"] for c in checks.values())
    status = 200 if live else 503
    return JsonResponse({"live": live, "ready": ready, "checks": checks}, status=status)
