"""`castray login` and `logout`."""

from typing import Annotated

import typer

from castray_client import config
from castray_client.cli.common import (
    JsonOpt,
    app,
    handled,
    print_json,
)
from castray_client.client import Client
from castray_client.display import out


# --- login -------------------------------------------------------------------------------
@app.command()
@handled
def login(
    url: Annotated[str, typer.Argument(help="The server, e.g. http://castray:8000")],
    user: Annotated[str | None, typer.Option("--user", "-u", help="User name (default: asked)")] = None,
    password: Annotated[
        str | None, typer.Option("--password", envvar="CASTRAY_PASSWORD", help="Password (default: asked)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Get an API token with a user and password and keep it (file mode 0600) for later commands."""
    url = config.normalise(url)
    user = user or typer.prompt("User")
    password = password if password is not None else typer.prompt("Password", hide_input=True)
    token = Client.login(url, user, password)
    path = config.remember(url, token, user)
    if as_json:
        print_json({"url": url, "user": user, "config": str(path)})
    else:
        out.print(f"Logged in to {url} as {user}; the token is kept in {path} (mode 0600).")


@app.command()
@handled
def logout(
    url: Annotated[str | None, typer.Argument(help="The server to forget (default: the default one)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Forget the token kept for a server (it stays valid on the server until an operator revokes it)."""
    dropped = config.forget(url)
    if as_json:
        print_json({"logged_out": dropped})
    elif dropped:
        out.print(f"Forgot the token for {dropped}.")
    else:
        out.print("No token was kept for that server.")
