"""Retrying a cast: a new transfer of the same file from the same source to the same nodes."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from transfers.models import Transfer
from transfers.services.casts import transfer_create
from transfers.services.targets import CastError


class NotFinished(CastError):
    """The transfer is still queued or running (the API answers 409)."""

    status = 409


@transaction.atomic
def transfer_retry(*, transfer: Transfer, requested_by: AbstractBaseUser | None = None) -> Transfer:
    """Queue a new transfer like `transfer`, which must have finished.

    It goes to the nodes the first one went to (a group's or a broadcast's members as they were
    then), and keeps its cast type and group for the record. Targets that already hold the file
    complete at once, so retrying a partial cast re-sends only to those that failed.
    """
    if transfer.status not in Transfer.FINAL:
        raise NotFinished(
            "status", f"transfer #{transfer.pk} is still {transfer.status}; cancel it or wait for it to finish"
        )
    nodes = [target.node for target in transfer.targets.select_related("node").order_by("node__name")]
    if not nodes:
        raise CastError("targets", f"transfer #{transfer.pk} had no targets to retry")
    retry = transfer_create(
        source=transfer.source,
        file_name=transfer.file_name,
        targets=nodes,
        requested_by=requested_by,
        mode=transfer.mode,
        priority=transfer.priority,
        fan_out=transfer.fan_out,
        dest_name=transfer.dest_name,
    )
    if (retry.cast_type, retry.group_id) != (transfer.cast_type, transfer.group_id):
        retry.cast_type = transfer.cast_type
        retry.group_id = transfer.group_id
        retry.save(update_fields=["cast_type", "group"])
    return retry
