"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "castray_site.settings")

from castray_site.lib.http_threads import get_asgi_application  # noqa: E402

# Django must be set up before anything imports models (the routing does). Its request
# threads are kept between requests, with their database connections (lib/http_threads.py).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from castray_site.routing import websocket_urlpatterns  # noqa: E402
from castray_site.ws_auth import websocket_stack  # noqa: E402

# Origin check, then the session or an API token (castray_site/ws_auth.py), then the route.
application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": websocket_stack(URLRouter(websocket_urlpatterns)),
    }
)
