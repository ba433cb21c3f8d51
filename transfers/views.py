"""The resource API for casts: transfers (with cancel and retry), their targets, and messages."""

from __future__ import annotations

from datetime import UTC, datetime

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Prefetch, QuerySet
from django_filters.fields import IsoDateTimeField
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import filters, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from castray_site.api import BooleanFilter, OrderingFilter
from castray_site.errors import Conflict
from transfers.models import Delivery, Message, Target, Transfer
from transfers.serializers import (
    MessageSerializer,
    TargetDetailSerializer,
    TransferFileSerializer,
    TransferSerializer,
)
from transfers.services import message_create, transfer_cancel, transfer_create, transfer_retry


class UtcDateTimeField(IsoDateTimeField):
    """An ISO 8601 time, converted to UTC: PostgreSQL refuses offsets Python accepts (-20:51)."""

    def to_python(self, value: object) -> datetime | None:
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise ValidationError("the time is out of range; give e.g. 2026-01-31T12:00:00Z") from None


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class TransferFilter(django_filters.FilterSet):
    source = django_filters.CharFilter(field_name="source__name", help_text="Source node name.")
    target = django_filters.CharFilter(field_name="targets__node__name", distinct=True, help_text="A target's name.")
    group = django_filters.CharFilter(field_name="group__name")
    requested_by = django_filters.CharFilter(field_name="requested_by__username")
    created_after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    # The kind of cast; strict, so that a word other than true or false is a 400, not ignored.
    is_directory = BooleanFilter(help_text="true: directory casts; false: single files.")

    class Meta:
        model = Transfer
        fields = ["status", "mode", "cast_type", "source__name"]


def transfers_for_api() -> QuerySet[Transfer]:
    # Everything a transfer's JSON shows, in a fixed number of queries for any page size.
    return Transfer.objects.select_related("source", "requested_by", "group").prefetch_related(
        Prefetch("targets", queryset=Target.objects.select_related("node", "parent"))
    )


class TransferViewSet(
    mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    queryset = transfers_for_api()
    serializer_class = TransferSerializer
    filter_backends = [DjangoFilterBackend, OrderingFilter, filters.SearchFilter]
    filterset_class = TransferFilter
    ordering_fields = ["id", "created_at", "priority", "status", "size", "finished_at"]
    search_fields = ["file_name"]

    def perform_create(self, serializer: BaseSerializer) -> None:
        data = serializer.validated_data
        transfer = transfer_create(
            source=data["source"],
            file_name=data["file_name"],
            targets=data.get("targets"),
            group=data.get("group"),
            broadcast=data.get("broadcast", False),
            requested_by=self.request.user,
            mode=data.get("mode", Transfer.Mode.TCP),
            priority=data.get("priority", 0),
            fan_out=data.get("fan_out", 0),
            dest_name=data.get("dest_name", ""),
            origin=data.get("origin", ""),
            mirror=data.get("mirror", False),
        )
        serializer.instance = transfers_for_api().get(pk=transfer.pk)

    @extend_schema(
        request=None,
        responses={200: TransferSerializer, 409: OpenApiResponse(description="The cast has finished already.")},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel a queued or running cast. Its requester or staff may."""
        transfer = self.get_object()
        if not (request.user.is_staff or transfer.requested_by_id == request.user.pk):
            raise PermissionDenied("only the user who started this cast, or staff, may cancel it")
        if not transfer_cancel(transfer=transfer):
            transfer.refresh_from_db(fields=["status"])
            raise Conflict(
                "", f"transfer #{transfer.pk} already finished ({transfer.status}); there is nothing to cancel"
            )
        return Response(self.get_serializer(transfers_for_api().get(pk=transfer.pk)).data)

    @extend_schema(
        request=None,
        responses={201: TransferSerializer, 409: OpenApiResponse(description="The cast has not finished yet.")},
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        """Cast the same file from the same source to the same nodes again, as a new transfer."""
        retry = transfer_retry(transfer=self.get_object(), requested_by=request.user)
        data = self.get_serializer(transfers_for_api().get(pk=retry.pk)).data
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(
        filters=False,
        responses={
            200: TransferFileSerializer(many=True),
            404: OpenApiResponse(description="No such transfer, or it is not a directory cast (yet)."),
        },
    )
    @action(detail=True, methods=["get"], filter_backends=[], serializer_class=TransferFileSerializer)
    def files(self, request: Request, pk: str | None = None) -> Response:
        """A directory cast's files (path, size, SHA-256), paginated, as the source named them at the start.

        Only counts are recorded per target (files_done, files_skipped), not which files.
        """
        transfer = get_object_or_404(Transfer.objects.only("id", "is_directory"), pk=pk)
        if not transfer.is_directory:
            raise NotFound(
                f"transfer #{transfer.pk} is not a directory cast, or its source has not answered yet: "
                "it has no file listing"
            )
        page = self.paginate_queryset(transfer.manifest_files.order_by("path", "id"))
        return self.get_paginated_response(TransferFileSerializer(page, many=True).data)


@extend_schema_field(OpenApiTypes.INT)
class IdFilter(django_filters.NumberFilter):
    """A whole number (django-filter's NumberFilter takes decimals)."""

    field_class = forms.IntegerField


class TargetFilter(django_filters.FilterSet):
    node = django_filters.CharFilter(field_name="node__name", help_text="Target node name.")
    # A transfer that does not exist has no targets: an empty list, as for an unknown `node`.
    transfer = IdFilter(field_name="transfer_id", help_text="The transfer's id.")

    class Meta:
        model = Target
        fields = ["transfer", "status"]


class TargetViewSet(viewsets.ReadOnlyModelViewSet):
    """Each recipient of each cast, with what happened there."""

    queryset = Target.objects.select_related("node", "parent")
    serializer_class = TargetDetailSerializer
    filterset_class = TargetFilter
    ordering_fields = ["id", "transfer", "status", "bytes_done", "started_at", "finished_at"]


class MessageFilter(django_filters.FilterSet):
    sender = django_filters.CharFilter(field_name="sender__name")
    recipient = django_filters.CharFilter(field_name="deliveries__node__name", distinct=True)
    message_type = django_filters.ChoiceFilter(field_name="kind", choices=Message.Kind.choices)

    class Meta:
        model = Message
        fields = ["status", "cast_type"]


class MessageViewSet(
    mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Short text or JSON messages cast to nodes' inboxes, with each delivery."""

    queryset = Message.objects.select_related("sender", "group", "requested_by").prefetch_related(
        Prefetch("deliveries", queryset=Delivery.objects.select_related("node"))
    )
    serializer_class = MessageSerializer
    filterset_class = MessageFilter
    ordering_fields = ["id", "created_at", "status"]

    def perform_create(self, serializer: BaseSerializer) -> None:
        data = serializer.validated_data
        message = message_create(
            sender=data["sender"],
            content=data["content"],
            kind=data.get("kind", Message.Kind.TEXT),
            targets=data.get("targets"),
            group=data.get("group"),
            broadcast=data.get("broadcast", False),
            requested_by=self.request.user,
        )
        serializer.instance = self.get_queryset().get(pk=message.pk)
