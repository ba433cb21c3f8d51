"""Numbers for people (`1.2 GiB`, `340 MB/s`, `3 s ago`) and the cluster banner.

castray.js formats live values the same way, so a number does not change style when the
page starts updating it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.utils import timezone

from castray_site.env import format_size, scaled
from clusters.models import Cluster

register = template.Library()

_RATE_UNITS = ["B/s", "kB/s", "MB/s", "GB/s", "TB/s"]


@register.filter
def size(value: Any) -> str:
    """Bytes in binary units: 1288490188 -> `1.2 GiB`."""
    if value is None or value == "":
        return "—"
    return format_size(float(value))


@register.filter
def rate(value: Any) -> str:
    """Bytes per second in decimal units, as networks are measured: 3.4e8 -> `340 MB/s`."""
    if value is None or value == "":
        return "—"
    return scaled(float(value), 1000, _RATE_UNITS)


@register.filter
def seconds(value: Any) -> str:
    """A duration: 0.42 -> `0.4 s`, 75 -> `1 min 15 s`, 3720 -> `1 h 2 min`."""
    if value is None or value == "":
        return "—"
    total = float(value)
    if total < 10:
        return f"{total:.1f} s"
    whole = int(round(total))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, secs = divmod(whole, 60)
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, rest = divmod(whole, 3600)
    return f"{hours} h {rest // 60} min" if rest // 60 else f"{hours} h"


@register.filter
def ago(value: datetime | None) -> str:
    """How long ago: `3 s ago`, `5 min ago`, `2 h ago`, `4 d ago`."""
    if value is None:
        return "never"
    delta = (timezone.now() - value).total_seconds()
    if delta < 0:
        return "just now"
    for limit, unit, span in ((60, "s", 1), (3600, "min", 60), (86400, "h", 3600)):
        if delta < limit:
            return f"{int(delta // span)} {unit} ago"
    return f"{int(delta // 86400)} d ago"


@register.filter
def percent(value: Any) -> str:
    """A ratio 0..1 as a whole percentage."""
    if value is None or value == "":
        return "—"
    return f"{float(value) * 100:.0f}%"


@register.filter
def fraction(done: Any, whole: Any) -> float:
    """done / whole clamped to 0..1 (0 when the whole is unknown)."""
    try:
        return max(0.0, min(1.0, float(done) / float(whole))) if whole else 0.0
    except (TypeError, ValueError):
        return 0.0


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    """`mapping|get_item:key` for dicts keyed by something a template cannot spell."""
    return mapping.get(key) if hasattr(mapping, "get") else None


@register.inclusion_tag("castray/_cluster_banner.html")
def cluster_banner() -> dict[str, Any]:
    """A banner on every page while the active cluster is not connected, saying what failed."""
    cluster = Cluster.objects.filter(active=True).only("name", "status", "last_error", "updated_at").first()
    show = cluster is not None and cluster.status in (Cluster.Status.DEGRADED, Cluster.Status.DISCONNECTED)
    return {"cluster": cluster, "show": show}
