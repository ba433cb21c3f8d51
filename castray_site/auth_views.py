"""Getting an API token with a username and password."""

from __future__ import annotations

from rest_framework.authtoken.views import ObtainAuthToken

from castray_site.api import AnonThrottle, UserThrottle


class ObtainToken(ObtainAuthToken):
    """POST username and password, get the user's API token (created on first use).

    DRF's own view is not throttled; this one is, so passwords cannot be guessed quickly.
    """

    throttle_classes = [AnonThrottle, UserThrottle]
