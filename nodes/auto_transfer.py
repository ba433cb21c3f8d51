"""The earlier CastRay's per-node "auto transfer" switch, kept for its clients.

CastRay has no automatic transfers yet, so the switch is only remembered and reported
(`auto_transfer_enabled` in /api/status). It lives in Django's cache framework rather than a
model: with the default local-memory cache it is per process and lost on restart; configure
a shared cache (CACHES) to keep it across processes.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.core.cache import cache

from nodes.models import Node


def _key(node_id: int) -> str:
    return f"castray:auto-transfer:{node_id}"


def auto_transfer_set(*, node: Node, enabled: bool) -> None:
    cache.set(_key(node.pk), enabled, timeout=None)


def auto_transfer_flags(node_ids: Iterable[int]) -> dict[int, bool]:
    """Each node's switch (False when never set), in one cache round trip."""
    ids = list(node_ids)
    stored = cache.get_many([_key(pk) for pk in ids])
    return {pk: bool(stored.get(_key(pk), False)) for pk in ids}
