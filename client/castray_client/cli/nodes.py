"""Nodes and groups: `nodes`, `groups`."""

import typer

from castray_client import display
from castray_client.cli.common import JsonOpt, TokenOpt, UrlOpt, app, connect, handled, print_json
from castray_client.display import out


@app.command()
@handled
def nodes(ctx: typer.Context, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List the nodes: status, address, bandwidth caps, Ray node."""
    with connect(ctx, url, token) as client:
        found = client.nodes()
    if as_json:
        print_json(found)
    else:
        out.print(display.nodes_table(found))


@app.command()
@handled
def groups(ctx: typer.Context, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List the node groups and their members."""
    with connect(ctx, url, token) as client:
        found = client.groups()
    if as_json:
        print_json(found)
    else:
        out.print(display.groups_table(found))
