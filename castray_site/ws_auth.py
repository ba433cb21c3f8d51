"""Who may open a WebSocket: origin checks and API-token authentication for Channels.

Browsers on CastRay's own pages authenticate with the session cookie. Dashboards served
from another origin (listed in CASTRAY_CORS_ORIGINS) must present an API token, either as
`?token=<key>` or as a `Sec-WebSocket-Protocol` value `castray.token.<key>`; from those
origins the session cookie is ignored, so a page elsewhere cannot ride on a user's login.
Any other origin is refused before the consumer runs (an HTTP 403 on the handshake; the
consumers refuse later, with close codes 4401/4404). A client that sends no Origin is
not a browser (a script): it needs a token or a session like anyone else.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

TOKEN_PROTOCOL_PREFIX = "castray.token."
PROTOCOL = "castray.v1"
# Set in the scope when the origin is a dashboard origin: only a token may authenticate.
TOKEN_ONLY = "castray_token_only"


def token_from_scope(scope: dict[str, Any]) -> str:
    query = parse_qs(scope.get("query_string", b"").decode("latin1"))
    if query.get("token"):
        return query["token"][0]
    for protocol in scope.get("subprotocols") or []:
        if protocol.startswith(TOKEN_PROTOCOL_PREFIX):
            return protocol[len(TOKEN_PROTOCOL_PREFIX) :]
    return ""


def chosen_subprotocol(scope: dict[str, Any]) -> str | None:
    """The subprotocol to answer with: browsers drop a socket whose offer goes unanswered."""
    offered = scope.get("subprotocols") or []
    if PROTOCOL in offered:
        return PROTOCOL
    return next((p for p in offered if p.startswith(TOKEN_PROTOCOL_PREFIX)), None)


@database_sync_to_async
def _user_for_token(key: str) -> Any:
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


class TokenAuthMiddleware(BaseMiddleware):
    """Set scope["user"] from an API token when the session did not authenticate."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        scope = dict(scope)
        user = scope.get("user")
        if scope.get(TOKEN_ONLY) or user is None or not user.is_authenticated:
            key = token_from_scope(scope)
            scope["user"] = await _user_for_token(key) if key else AnonymousUser()
        return await self.inner(scope, receive, send)


class CastRayOriginValidator(OriginValidator):
    """Same-site origins (ALLOWED_HOSTS) as usual; dashboard origins token-only; no others."""

    def __init__(self, application: Any) -> None:
        super().__init__(application, settings.ALLOWED_HOSTS)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        origin = dict(scope.get("headers", [])).get(b"origin")
        if origin is None:
            return await self.application(scope, receive, send)
        parsed = urlparse(origin.decode("latin1"))
        if self.validate_origin(parsed):
            return await self.application(scope, receive, send)
        dashboards = getattr(settings, "CORS_ALLOWED_ORIGINS", [])
        if any(self.match_allowed_origin(parsed, pattern) for pattern in dashboards):
            return await self.application({**scope, TOKEN_ONLY: True}, receive, send)
        return await WebsocketDenier()(scope, receive, send)


def websocket_stack(inner: Any) -> Any:
    return CastRayOriginValidator(AuthMiddlewareStack(TokenAuthMiddleware(inner)))
