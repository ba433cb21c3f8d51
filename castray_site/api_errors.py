"""Every API error is JSON with a `message` a person can act on, plus the field details.

DRF's own errors, the domain's (every `DomainError`, a Django `ValidationError` from `full_clean`,
an unsafe file name) and Django's 400/404/500 pages for API paths all come out as
`{"success": false, "message": "<field>: <what to fix>", "errors": {...}}`. Server-side failures
(5xx) also give the `request_id` their log lines carry (castray_site/request_id.py).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.conf import settings
from django.core.exceptions import TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.utils import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from castray_site.errors import DomainError
from castray_site.request_id import request_id
from dataplane.storage import UnsafePath

logger = logging.getLogger("castray.api")
# The database refused the connection, dropped it or is restarting: nothing the client did
# wrong, and it may well work in a moment.
DATABASE_DOWN = (OperationalError, InterfaceError)
DATABASE_DOWN_MESSAGE = "the database is not reachable; try again"


def _first_message(data: Any, path: str = "") -> str:
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "detail":
                return _first_message(value, path)
            label = key if key != "non_field_errors" else ""
            return _first_message(value, f"{path}.{label}".strip(".") if label else path)
    if isinstance(data, list) and data:
        return _first_message(data[0], path)
    text = str(data)
    return f"{path}: {text}" if path else text


def _as_drf(exc: Exception) -> Exception:
    """Domain errors raised below the views become DRF errors with the field they concern."""
    if isinstance(exc, DomainError):
        # Without a field the message stands alone, as DRF's own `detail` does.
        error = exceptions.APIException({exc.field: [exc.message]} if exc.field else exc.message)
        error.status_code = exc.status
        return error
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            return exceptions.ValidationError(exc.message_dict)
        return exceptions.ValidationError({"non_field_errors": exc.messages})
    if isinstance(exc, UnsafePath):
        return exceptions.ValidationError({"file_name": [str(exc)]})
    # Django's multipart parser stops at these limits with a SuspiciousOperation that DRF does
    # not know; the client only sent too much.
    if isinstance(exc, TooManyFilesSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        return exceptions.ParseError(f"the request has more than {limit} files; upload one file per request")
    if isinstance(exc, TooManyFieldsSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        return exceptions.ParseError(f"the request has more than {limit} form fields")
    if isinstance(exc, DATABASE_DOWN):
        error = exceptions.APIException(DATABASE_DOWN_MESSAGE)
        error.status_code = 503
        return error
    return exc


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DATABASE_DOWN):
        # Answered, not raised: Django logs only the 503; the reason (refused, too many clients) is here.
        request = context.get("request")
        logger.error("the database is not reachable, answered 503: %s", exc, exc_info=exc, extra={"request": request})
    response = drf_exception_handler(_as_drf(exc), context)
    if response is None:
        return None
    data = response.data
    body: dict[str, Any] = {"success": False, "message": _first_message(data)}
    if isinstance(data, dict) and set(data) != {"detail"}:
        body["errors"] = data
    if response.status_code >= 500:
        _add_request_id(body, context.get("request"))
    response.data = body
    return response


def _add_request_id(body: dict[str, Any], request: Any) -> dict[str, Any]:
    """A server-side failure names the request, so its log lines can be found."""
    value = request_id(request)
    if value:
        body["request_id"] = value
    return body


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/") or request.path == "/health"


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"success": False, "message": f"bad request: {exception}"}, status=400)
    return defaults.bad_request(request, exception)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        message = f"{request.path} is not an API endpoint; see /api/docs/ for the list"
        return JsonResponse({"success": False, "message": message}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if not _is_api(request):
        return defaults.server_error(request)
    # Django calls this while it handles the exception, which it has logged with its traceback.
    if isinstance(sys.exception(), DATABASE_DOWN):
        return JsonResponse(_add_request_id({"success": False, "message": DATABASE_DOWN_MESSAGE}, request), status=503)
    value = request_id(request)
    where = f" under request_id {value}" if value else ""
    message = f"the server failed to answer; the error is in its log{where}"
    return JsonResponse(_add_request_id({"success": False, "message": message}, request), status=500)
