"""Writes to cluster records: status, switches between clusters, placements, adoption, run-time
config, file requests. Views, pages and the worker all call these.

One module per entity; this package re-exports them so that callers (the worker's
`services.cluster_switch(...)`, views, tests) need not know which module a function lives in.
"""

from __future__ import annotations

from clusters.services.config import CONFIG_SETTINGS, runtime_config_effective, runtime_config_update
from clusters.services.file_requests import (
    file_request_claim,
    file_request_create,
    file_request_finish,
    file_requests_expire,
)
from clusters.services.operations import (
    ADDRESS_RE,
    OperationError,
    clean_address,
    operation_claim,
    operation_finish,
    operation_request,
    operation_switching,
)
from clusters.services.placements import node_mark_down, node_rebind, nodes_adopt, placements_record, ray_node_key
from clusters.services.records import (
    cluster_active,
    cluster_configured,
    cluster_for_address,
    cluster_record,
    cluster_record_stats,
    cluster_switch,
    discovered_record,
    messages_requeue,
    transfers_requeue,
)

__all__ = [
    "operation_switching",
    "file_requests_expire",
    "ADDRESS_RE",
    "CONFIG_SETTINGS",
    "OperationError",
    "clean_address",
    "cluster_active",
    "cluster_configured",
    "cluster_for_address",
    "cluster_record",
    "cluster_record_stats",
    "cluster_switch",
    "discovered_record",
    "file_request_claim",
    "file_request_create",
    "file_request_finish",
    "messages_requeue",
    "node_mark_down",
    "node_rebind",
    "nodes_adopt",
    "operation_claim",
    "operation_finish",
    "operation_request",
    "placements_record",
    "ray_node_key",
    "runtime_config_effective",
    "runtime_config_update",
    "transfers_requeue",
]
