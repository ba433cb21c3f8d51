"""Every request has an id: in its X-Request-ID header, in 5xx error bodies and in the log lines about it.

A person who got "the server failed to answer" quotes the id, and the operator finds the
traceback with it. An id a proxy or client already gave (X-Request-ID) is kept when it is
well formed, so one id follows the request through every hop.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django.utils.deprecation import MiddlewareMixin

HEADER = "X-Request-ID"
# Only plain ids are taken from outside: the id is written into log lines, where spaces or line
# breaks could forge entries, and into JSON bodies and headers.
WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")


def request_id(request: Any) -> str | None:
    """The id of a Django or DRF request (DRF's passes attributes through), if it has one."""
    value = getattr(request, "id", None)
    return value if isinstance(value, str) else None


class RequestIdMiddleware(MiddlewareMixin):
    """Sets `request.id` (the incoming X-Request-ID if well formed, else a new uuid4 hex)."""

    def process_request(self, request: HttpRequest) -> None:
        incoming = request.headers.get(HEADER, "")
        request.id = incoming if WELL_FORMED.fullmatch(incoming) else uuid.uuid4().hex  # type: ignore[attr-defined]

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        value = request_id(request)
        if value:
            response[HEADER] = value
        return response


class RequestIdFilter(logging.Filter):
    """Gives log records about a request its id as `request_id` (Django's records carry the request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            value = request_id(getattr(record, "request", None))
            if value:
                record.request_id = value
        return True
