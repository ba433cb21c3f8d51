"""Pieces every API view shares: throttling, pagination, filtering, content negotiation (permissions:
permissions.py)."""

from __future__ import annotations

import re
from typing import Any

import django_filters
from django import forms
from django.db import models
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import filters
from rest_framework.exceptions import ValidationError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

_INTEGER = re.compile(r"-?[0-9]+")


# DRF's throttles read their rates once, when the class is defined; these read them per request,
# so a changed setting (tests, a reloaded configuration) takes effect.
class UserThrottle(UserRateThrottle):
    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class AnonThrottle(AnonRateThrottle):
    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class Pagination(LimitOffsetPagination):
    # A client asking for a million rows gets a bounded page, not a slow response.
    max_limit = 500
    # The largest OFFSET the databases take (a 64-bit integer).
    max_offset = 2**63 - 1

    # DRF ignores a limit or offset it cannot read and answers the first page: a client that
    # mistyped one would page through the same rows forever. They are refused instead.
    def get_limit(self, request: Request) -> int:
        limit = self._whole_number(request, self.limit_query_param, minimum=1, maximum=None)
        return self.default_limit if limit is None else min(limit, self.max_limit)

    def get_offset(self, request: Request) -> int:
        offset = self._whole_number(request, self.offset_query_param, minimum=0, maximum=self.max_offset)
        return offset or 0

    def _whole_number(self, request: Request, name: str, *, minimum: int, maximum: int | None) -> int | None:
        raw = request.query_params.get(name)
        if not raw:  # `?limit=` is no limit, as HTML forms send it
            return None
        value = None
        if _INTEGER.fullmatch(raw):
            # Past 19 digits only "larger than any bound" matters (and int() refuses thousands).
            digits = raw.removeprefix("-").lstrip("0")
            value = (2**64 if len(digits) > 19 else int(digits or "0")) * (-1 if raw.startswith("-") else 1)
        if value is None or value < minimum or (maximum is not None and value > maximum):
            upper = f" to {maximum}" if maximum is not None else " or more"
            raise ValidationError({name: [f"give a whole number from {minimum}{upper}"]})
        return value

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.limit_query_param:
                parameter["schema"]["minimum"] = 1
                parameter["description"] = f"Rows per page, up to {self.max_limit} (more gives {self.max_limit})."
            elif parameter["name"] == self.offset_query_param:
                parameter["schema"].update(minimum=0, maximum=self.max_offset)
        return parameters


class AnyAcceptNegotiation(DefaultContentNegotiation):
    """For downloads: a client that accepts only the file's type still gets the file (or a JSON error)."""

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, Any]:
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except Exception:  # noqa: BLE001 - NotAcceptable: fall back to JSON for errors
            return renderers[0], renderers[0].media_type


class StrictBooleanField(forms.Field):
    """true or false (1 or 0), or nothing. Django's NullBooleanField reads any other word as
    "unknown", and a filter then filters nothing: `?enabled=yes` would list the disabled too."""

    widget = forms.TextInput  # the raw text: the select widgets already turn odd words into None

    def to_python(self, value: Any) -> bool | None:
        if value in (None, ""):
            return None
        text = str(value).lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise forms.ValidationError("give true or false", code="invalid")


class BooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


class FilterSet(django_filters.rest_framework.FilterSet):
    FILTER_DEFAULTS = {
        **django_filters.rest_framework.FilterSet.FILTER_DEFAULTS,
        models.BooleanField: {"filter_class": BooleanFilter},
    }


class FilterBackend(DjangoFilterBackend):
    """django-filter for `filterset_fields`, with the strict booleans above."""

    filterset_base = FilterSet


class OrderingFilter(filters.OrderingFilter):
    """DRF's ordering, except that a field it cannot order by is a 400 naming the fields it can.

    DRF drops unknown fields and answers in the default order: a client that mistyped one
    would read a list in an order it did not ask for and not know it.
    """

    def remove_invalid_fields(self, queryset: Any, fields: list[str], view: Any, request: Request) -> list[str]:
        valid = {name for name, _ in self.get_valid_fields(queryset, view, {"request": request})}
        unknown = [term for term in fields if term.removeprefix("-") not in valid]
        if unknown:
            raise ValidationError(
                {self.ordering_param: [f"cannot order by {', '.join(unknown)}; use {', '.join(sorted(valid))}"]}
            )
        return fields

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        context = {"request": getattr(view, "request", None)}
        fields = sorted(name for name, _ in self.get_valid_fields(getattr(view, "queryset", None), view, context))
        term = "-?(" + "|".join(re.escape(name) for name in fields) + ")"
        for parameter in parameters:  # the schema says which terms are accepted
            parameter["schema"]["pattern"] = f"^{term}(,{term})*$"
            parameter["description"] = f"Comma-separated, `-` for descending: {', '.join(fields)}."
        return parameters
