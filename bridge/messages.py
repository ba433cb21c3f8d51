"""Messages: claim queued ones in batches, hand each sender's batch to its actor, record deliveries."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from castray_site.lib import short_error
from dataplane.contract import InboxMessage, MessageBatch
from nodes.models import Node
from transfers import services
from transfers.models import Delivery, Message

# Messages handed to actors per worker step: large enough for thousands per second.
MESSAGE_BATCH = 5000
# Batches in flight at once; past this the worker waits for actors to answer first.
MESSAGE_BATCHES_IN_FLIGHT = 8


class MessageSteps:
    worker_id: str
    node_prefix: str
    actors: dict[int, Any]
    message_refs: list[tuple[list[Any], str]]  # (actor calls, batch lease token)

    def deliver_messages(self) -> int:
        """Claim queued messages and hand each sender's batch to its actor; return how many."""
        if len(self.message_refs) >= MESSAGE_BATCHES_IN_FLIGHT:
            return 0
        if not Message.objects.filter(status=Message.Status.QUEUED).exists():
            return 0
        token = services.messages_claim(
            worker_id=self.worker_id,
            lease_seconds=settings.CASTRAY_LEASE_SECONDS,
            limit=MESSAGE_BATCH,
            sender_prefix=self.node_prefix,
        )
        if not token:
            return 0
        # Plain tuples: thousands of model instances per step would cost more than the sockets.
        rows = list(
            Delivery.objects.filter(message__lease_owner=token, status=Delivery.Status.PENDING).values_list(
                "pk",
                "node_id",
                "message_id",
                "message__sender_id",
                "message__kind",
                "message__content",
                "message__created_at",
            )
        )
        nodes = Node.objects.in_bulk({row[1] for row in rows} | {row[3] for row in rows})
        plans: dict[int, dict[int, tuple[Node, list[InboxMessage]]]] = {}  # sender -> node -> its messages
        unreachable: dict[int, str] = {}
        for pk, node_id, message_id, sender_id, kind, content, created in rows:
            node, sender = nodes[node_id], nodes[sender_id]
            if not node.enabled or node.status != Node.Status.ONLINE or not node.port:
                unreachable[pk] = f"recipient {node.name} is {'disabled' if not node.enabled else node.status}"
                continue
            if sender.status != Node.Status.ONLINE or sender_id not in self.actors:
                unreachable[pk] = f"sender {sender.name} is {sender.status}"
                continue
            batch = plans.setdefault(sender_id, {}).setdefault(node_id, (node, []))
            batch[1].append(InboxMessage(pk, message_id, sender.name, kind, content, created.isoformat()))
        # In-flight deliveries are recorded when their actor calls return.
        services.deliveries_record(token=token, failures=unreachable, final=not plans)
        if plans:
            refs = [
                self.actors[sender_id].send_messages.remote(
                    [MessageBatch(n.name, n.address, n.port, tuple(messages)) for n, messages in batches.values()]
                )
                for sender_id, batches in plans.items()
            ]
            self.message_refs.append((refs, token))
        return len(rows)

    def record_messages(self) -> int:
        """Record the deliveries of every batch whose actor calls all returned; return how many batches."""
        import ray
        from ray.exceptions import RayError

        done = 0
        for refs, token in list(self.message_refs):
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            if len(ready) < len(refs):
                continue
            self.message_refs.remove((refs, token))
            failures: dict[int, str] = {}
            for ref in refs:
                try:
                    failures.update({pk: error for pk, error in ray.get(ref).items() if error})
                except RayError as exc:
                    error = f"sender failed: {short_error(exc)}"
                    pending = Delivery.objects.filter(message__lease_owner=token, status=Delivery.Status.PENDING)
                    failures.update({pk: error for pk in pending.values_list("pk", flat=True)})
            services.deliveries_record(token=token, failures=failures)
            done += 1
        return done
