"""The `castray` command.

Exit codes: 0 done; 1 the server refused or the operation failed (a cast that ended partial,
failed or cancelled, a download that did not verify); 2 a usage error (bad arguments, no server
configured, a source the server cannot cast from); 3 a wait that timed out (the cast goes on);
130 interrupted.
"""

import sys

# Each module adds its commands to the app when imported.
from castray_client.cli import account, casts, files, messages, nodes  # noqa: F401
from castray_client.cli.common import EXIT_INTERRUPTED, app


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


__all__ = ["app", "main"]
