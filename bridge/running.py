"""`Running`: what the worker keeps about a cast it has started (casts.py and moves.py share it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dataplane.contract import FileInfo


@dataclass
class Running:
    """A cast this worker has started and is watching."""

    transfer_id: int
    stage: str  # "info": asking the source for size and SHA-256; "cast": bytes moving
    ref: Any
    target_nodes: dict[int, int] = field(default_factory=dict)  # target id -> node id
    progress_refs: list[Any] = field(default_factory=list)
    last_progress: float = 0.0
    rounds: int = 0
    source_bytes: int = 0
    relay_bytes: int = 0
    info: FileInfo | None = None
    pids: dict[int, int | None] = field(default_factory=dict)  # target id -> its actor's pid at launch
    cancelled_at: float | None = None  # when this worker told the actors the cast was cancelled
    moves: dict[int, Any] = field(default_factory=dict)  # target id -> its move to another feeder (moves.py)
