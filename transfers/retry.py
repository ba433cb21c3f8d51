"""Retrying a cast: a new transfer with the same source, file, targets and options.

The admin and the web pages both offer it; it goes through `transfer_create`, so a retry is
checked like any new cast (a target disabled since then is refused with the reason).
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from nodes.models import Node
from transfers.models import Transfer
from transfers.services import CastError, transfer_create


def transfer_retry(*, transfer: Transfer, requested_by: AbstractBaseUser | None = None) -> Transfer:
    if transfer.status not in Transfer.FINAL:
        raise CastError("status", f"cast #{transfer.pk} is still {transfer.status}; cancel it or let it finish")
    targets = list(Node.objects.filter(targets__transfer=transfer).order_by("name"))
    return transfer_create(
        source=transfer.source,
        file_name=transfer.file_name,
        targets=targets,
        requested_by=requested_by,
        mode=transfer.mode,
        priority=transfer.priority,
        fan_out=transfer.fan_out,
        dest_name=transfer.dest_name,
    )
