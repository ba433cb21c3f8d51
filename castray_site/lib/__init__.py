"""Plain helpers every layer of the control plane shares: not an app, no models, no Django.

Beside them: `logformat` (JSON log lines) and `gc_tuning` (garbage-collector freeze).
"""

from __future__ import annotations

from datetime import datetime


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 text for JSON answers; None stays None (not started, never seen)."""
    return moment.isoformat() if moment else None


def unix_seconds(moment: datetime | None) -> float | None:
    # The earlier CastRay's API gave times as Unix seconds (it used time.time()).
    return moment.timestamp() if moment else None


def short_error(exc: BaseException) -> str:
    """`Type: first line` of an exception, bounded: for status details and error columns.

    Ray's errors carry whole remote tracebacks; their first line says what went wrong.
    """
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]
