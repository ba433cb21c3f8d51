"""Test settings: the real settings module, with its data kept in a throwaway directory."""

import os
import tempfile

os.environ.setdefault("CASTRAY_DATA_DIR", tempfile.mkdtemp(prefix="castray-test-"))
os.environ.setdefault("CASTRAY_CHUNK_SIZE", "64KiB")

from castray_site.settings import *  # noqa: E402,F403

# Tests drive the worker step by step: short intervals keep them quick.
CASTRAY_HEARTBEAT_SECONDS = 0.2
CASTRAY_PROGRESS_INTERVAL = 0.1
CASTRAY_IO_TIMEOUT = 20.0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
