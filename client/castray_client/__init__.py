"""CastRay's client: `Client` for Python, `castray` on the command line.

from castray_client import Client
with Client("http://castray:8000", token) as castray:
    cast = castray.cast("node_1", "data/model.bin", to="all")
    cast.wait(timeout=600)
"""

from __future__ import annotations

__version__ = "0.1.0"

from castray_client.client import CastRayError, Client, Download, WaitTimeout  # noqa: E402
from castray_client.models import Cast, FileInfo, Group, Message, Node, Target  # noqa: E402

__all__ = [
    "Cast",
    "CastRayError",
    "Client",
    "Download",
    "FileInfo",
    "Group",
    "Message",
    "Node",
    "Target",
    "WaitTimeout",
    "__version__",
]
