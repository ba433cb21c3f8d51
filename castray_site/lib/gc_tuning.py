"""Keep garbage-collection pauses out of request latency.

A generation-2 collection walks every long-lived object: modules, Django's URL resolvers,
DRF's serializers, what the first requests load lazily. With ~120k of them a collection took
5-12 ms here and came twice in about twenty transfer-list requests, enough on its own to push
the list's p99 past 50 ms (measured with `castray_bench api`). `gc.freeze()` moves the objects
alive at that moment into a permanent generation that collections skip, so it runs after a
few early requests, once the lazy loading is done. Objects created later are collected as usual.
"""

from __future__ import annotations

import gc
from typing import Any

from django.core.signals import request_finished

# Freeze after these request counts: the first loads most, later ones catch the rest.
FREEZE_AFTER = frozenset({1, 10, 100, 1000})
_finished = 0


def _after_request(**kwargs: Any) -> None:
    global _finished
    _finished += 1
    if _finished in FREEZE_AFTER:
        gc.collect()
        gc.freeze()


def install() -> None:
    request_finished.connect(_after_request, dispatch_uid="castray-gc-freeze")
