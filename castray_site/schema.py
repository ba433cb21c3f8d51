"""The OpenAPI schema declares every status an operation can answer, with the one error body.

drf-spectacular documents what a view returns on success. The errors come from the plumbing
every view shares (authentication, permissions, throttling, parsing, the database), so they
are added here from what the view is made of; errors particular to a view (409 for a state
that does not allow it, 413, 416, 507) are declared on the view with `extend_schema`, and get
the same error body here.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import permissions, serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.settings import api_settings

NO_NUL = "^[^\\x00]*$"


class ErrorSerializer(serializers.Serializer):
    """Every error answer (castray_site/api_errors.py)."""

    success = serializers.BooleanField(help_text="Always false.")
    message = serializers.CharField(help_text="What went wrong and what to do, led by the field it concerns.")
    errors = serializers.DictField(required=False, help_text="Each field's messages, when fields were wrong.")
    request_id = serializers.CharField(
        required=False, help_text="On 5xx: the request's id in the server's log (also the X-Request-ID header)."
    )

    class Meta:
        fields = ["success", "message", "errors", "request_id"]


class AutoSchema(SpectacularAutoSchema):
    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:  # excluded from the schema
            return None
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "query":
                continue
            # `?status=` is no filter, as HTML forms send it (django-filter, pagination, ordering).
            parameter.setdefault("allowEmptyValue", True)
            # Text filters and searches refuse a NUL (no database stores one); an ordering that
            # names no field, NUL or not, orders by the default.
            schema = parameter.get("schema", {})
            plain_text = schema.get("type") == "string" and not ({"enum", "format", "pattern"} & set(schema))
            if plain_text and parameter["name"] != api_settings.ORDERING_PARAM:
                schema["pattern"] = NO_NUL
        responses = operation["responses"]
        for status, description in self._shared_errors(operation):
            responses.setdefault(str(status), {"description": description})
        error = self.resolve_serializer(ErrorSerializer, "response").ref
        for status, response in responses.items():
            if int(status) >= 400 and "content" not in response:
                response["content"] = {"application/json": {"schema": error}}
        return operation

    def _shared_errors(self, operation: dict[str, Any]) -> list[tuple[int, str]]:
        view, method = self.view, self.method.upper()
        parameters = operation.get("parameters", [])
        errors = []
        if "requestBody" in operation or any(p["in"] != "path" for p in parameters):
            errors.append((400, "The request is malformed or a value is not acceptable; `message` says which."))
        # Authentication runs for every view: a wrong token is refused even where none is needed.
        errors.append((401, "The credentials are missing or wrong."))
        open_to_all = all(isinstance(p, permissions.AllowAny) for p in view.get_permissions())
        csrf = method not in permissions.SAFE_METHODS and any(
            isinstance(a, SessionAuthentication) for a in view.get_authenticators()
        )
        if not open_to_all or csrf:
            errors.append((403, "Not allowed to this user (staff only), or a session login without its CSRF token."))
        if any(p["in"] == "path" for p in parameters):
            errors.append((404, "Nothing of that name or id."))
        if "requestBody" in operation:
            errors.append((415, "The body is not in one of the media types listed."))
        if view.get_throttles():
            errors.append((429, "Too many requests; wait as `Retry-After` says."))
        errors.append((503, "The database is not reachable; try again."))
        return errors
