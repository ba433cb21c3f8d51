"""What every command shares: the Typer app, common options, exit codes, errors, the connection."""

import functools
import json
import re
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape

from castray_client import __version__, config
from castray_client.client import CastRayError, Client, WaitTimeout
from castray_client.display import err
from castray_client.models import plain

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_INTERRUPTED = 130
URL_SOURCE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

app = typer.Typer(
    help="Cast files and messages across the nodes of a CastRay cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Mode(str, Enum):
    tcp = "tcp"
    udp = "udp"
    object_store = "object_store"


# Options every command takes, so they can come after the command name as well as before it.
UrlOpt = Annotated[
    str | None, typer.Option("--url", help="CastRay server, e.g. http://host:8000 (default: CASTRAY_URL, then login)")
]
TokenOpt = Annotated[str | None, typer.Option("--token", help="API token (default: CASTRAY_TOKEN, then login)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables and bars.")]
ToOpt = Annotated[str, typer.Option("--to", help="all, group:NAME, or node names separated by commas.")]


def print_json(data: Any) -> None:
    # Plain print, not rich: JSON must not be wrapped, highlighted or marked up.
    print(json.dumps(plain(data), indent=2, default=str))


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    err.print("[red]error:[/] " + escape(message), soft_wrap=True)
    return typer.Exit(code)


F = TypeVar("F", bound=Callable[..., Any])


def handled(func: F) -> F:
    """Turn the client's errors into a message and the exit codes above."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except WaitTimeout as exc:
            raise fail(str(exc), EXIT_TIMEOUT) from None
        except CastRayError as exc:
            raise fail(str(exc)) from None
        except config.ConfigError as exc:
            raise fail(str(exc), EXIT_USAGE) from None
        except KeyboardInterrupt:
            raise fail("interrupted", EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def connect(ctx: typer.Context, url: str | None, token: str | None) -> Client:
    given = ctx.obj or {}
    settings = config.resolve(url or given.get("url"), token or given.get("token"))
    return Client(settings.url, settings.token)


def usage(message: str, param: str | None = None) -> typer.BadParameter:
    return typer.BadParameter(message, param_hint=param)


def version_callback(value: bool) -> None:
    if value:
        print(f"castray {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    url: UrlOpt = None,
    token: TokenOpt = None,
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    ctx.obj = {"url": url, "token": token}
