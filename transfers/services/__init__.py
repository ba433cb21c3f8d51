"""Writes to transfers, targets and messages. The API, the admin and the worker all call these.

One module per entity; this package re-exports them so that callers (views, the admin, the
bridge worker, tests) write `from transfers.services import transfer_create` or
`services.transfer_claim(...)` whatever module a function lives in.
"""

from __future__ import annotations

from transfers.events import publish_transfer
from transfers.services.casts import (
    busy_nodes,
    target_settle_abort,
    transfer_add_round,
    transfer_cancel,
    transfer_claim,
    transfer_create,
    transfer_finish,
    transfer_record_cancelled,
    transfer_recover_expired,
    transfer_renew_leases,
    transfer_start,
)
from transfers.services.messages import (
    MAX_MESSAGE_BYTES,
    deliveries_record,
    message_create,
    messages_claim,
    messages_create_bulk,
    messages_recover_expired,
)
from transfers.services.retry import NotFinished, transfer_retry
from transfers.services.targets import (
    CastError,
    resolve_targets,
    target_progress,
    targets_fail,
    targets_record,
    targets_retry,
    targets_set_parents,
)

__all__ = [
    "transfer_add_round",
    "MAX_MESSAGE_BYTES",
    "CastError",
    "NotFinished",
    "busy_nodes",
    "deliveries_record",
    "message_create",
    "messages_claim",
    "messages_create_bulk",
    "messages_recover_expired",
    "publish_transfer",
    "resolve_targets",
    "target_progress",
    "target_settle_abort",
    "targets_fail",
    "targets_record",
    "targets_retry",
    "targets_set_parents",
    "transfer_cancel",
    "transfer_claim",
    "transfer_create",
    "transfer_finish",
    "transfer_record_cancelled",
    "transfer_recover_expired",
    "transfer_renew_leases",
    "transfer_retry",
    "transfer_start",
]
