"""Every API error is JSON with a `message` a person can act on, plus the field details."""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


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


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    body: dict[str, Any] = {"success": False, "message": _first_message(data)}
    if isinstance(data, dict) and set(data) != {"detail"}:
        body["errors"] = data
    response.data = body
    return response
