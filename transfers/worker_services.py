"""Writes to casts that only the bridge worker makes, beside transfers/services.py.

Like every service, each write publishes its event once the transaction commits.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from transfers.events import publish_transfer
from transfers.models import Transfer


@transaction.atomic
def transfer_add_round(*, transfer: Transfer, tree: dict[str, Any]) -> Transfer:
    """Record the tree of a repair round (targets re-parented after their relay failed).

    The first round's tree is the cast's tree (`transfer_start`); later ones are kept under
    its "rounds" key, so the cast's page shows every tree the bytes took.
    """
    rounds = [*transfer.tree.get("rounds", []), tree]
    transfer.tree = {**transfer.tree, "rounds": rounds}
    transfer.save(update_fields=["tree"])
    publish_transfer(transfer)
    return transfer
