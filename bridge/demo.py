"""Demo casts: while demo mode is on, a random file on a random node is cast to up to two others."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet

from bridge.config import RunConfig
from nodes.models import Node
from transfers.services import CastError, transfer_create

log = logging.getLogger("castray.worker.clusters")
DEMO_FILES = 5  # demo casts rotate over this many names per source, so storage does not fill up

# The file being written for the next demo cast: (actor call, source id, target ids, file name).
PendingDemo = tuple[Any, int, list[int], str]


class DemoSteps:
    config: RunConfig
    actors: dict[int, Any]
    last_demo: float
    demo_pending: PendingDemo | None
    demo_count: int
    nodes: Callable[[], QuerySet[Node]]  # nodes.py

    def demo_step(self) -> str:
        """Every interval: write a random file on a random online node, then cast it to up to two others."""
        if self.demo_pending is not None:
            return self.demo_cast()
        now = time.monotonic()
        if not self.config.demo_enabled or now - self.last_demo < self.config.demo_interval:
            return ""
        self.last_demo = now
        online = [n for n in self.nodes().online() if n.pk in self.actors]
        if len(online) < 2:
            return ""
        source = random.choice(online)
        others = [n for n in online if n.pk != source.pk]
        targets = random.sample(others, k=min(2, len(others)))
        name = f"demo/demo-{self.demo_count % DEMO_FILES}.bin"
        self.demo_count += 1
        size, chunk = self.config.demo_file_size, self.config.chunk_size
        ref = self.actors[source.pk].generate_file.remote(name, size, "random", chunk)
        self.demo_pending = (ref, source.pk, [t.pk for t in targets], name)
        return f"writing {name} on {source.name}"

    def demo_cast(self) -> str:
        """Once the source wrote the demo file, cast it; return what happened ("" while it writes)."""
        import ray

        assert self.demo_pending is not None
        ref, source_id, target_ids, name = self.demo_pending
        ready, _ = ray.wait([ref], timeout=0)
        if not ready:
            return ""
        self.demo_pending = None
        try:
            ray.get(ref)
            source = Node.objects.get(pk=source_id)
            targets = list(Node.objects.filter(pk__in=target_ids, enabled=True))
            transfer = transfer_create(source=source, file_name=name, targets=targets)
        except (CastError, Node.DoesNotExist) as exc:
            return f"skipped: {exc}"
        except Exception as exc:  # noqa: BLE001 - the source failed to write the file
            log.warning("demo file on node %s failed: %s", source_id, exc)
            return f"failed: {exc}"
        return f"cast #{transfer.pk} {name} from {source.name} to {', '.join(t.name for t in targets)}"
