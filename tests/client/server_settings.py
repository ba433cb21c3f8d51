"""The real server's settings plus one recorder, for the client's end-to-end tests.

The server the client tests start runs with these settings (DJANGO_SETTINGS_MODULE), so the
tests can see from the server's side which downloads asked for a byte range.
"""

from castray_site.settings import *  # noqa: F403
from castray_site.settings import MIDDLEWARE

MIDDLEWARE = ["tests.client.request_log.RangeRequestLog", *MIDDLEWARE]
