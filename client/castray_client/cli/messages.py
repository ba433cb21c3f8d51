"""Messages: `send` and `inbox`."""

import json
from pathlib import Path
from typing import Annotated

import typer

from castray_client import display
from castray_client.cli.common import (
    JsonOpt,
    TokenOpt,
    ToOpt,
    UrlOpt,
    app,
    connect,
    handled,
    print_json,
    usage,
)
from castray_client.client import target_choice
from castray_client.display import out


# --- messages ------------------------------------------------------------------------------
@app.command()
@handled
def send(
    ctx: typer.Context,
    to: ToOpt,
    text: Annotated[str | None, typer.Argument(help="The message text.")] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json-file", exists=True, dir_okay=False, help="Send this JSON instead of text.")
    ] = None,
    sender: Annotated[str | None, typer.Option("--from", help="Sending node (default: first online node).")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a text (or JSON) message to nodes' inboxes."""
    try:
        target_choice(to)
    except ValueError as exc:
        raise usage(str(exc), "'--to'") from None
    if (text is None) == (json_file is None):
        raise usage("give either TEXT or --json-file", "'TEXT'")
    kind = "text"
    content = text or ""
    if json_file is not None:
        content = json_file.read_text()
        try:
            json.loads(content)
        except ValueError as exc:
            raise usage(f"{json_file} is not JSON: {exc}", "'--json-file'") from None
        kind = "json"
    with connect(ctx, url, token) as client:
        node = sender or client.first_online_node().name
        message = client.send(content, sender=node, to=to, message_type=kind)
    if as_json:
        print_json(message)
    else:
        out.print(f"message #{message.id} from {node} to {len(message.deliveries)} node(s): {message.status}")


@app.command()
@handled
def inbox(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="The node.")],
    status_: Annotated[str | None, typer.Option("--status", help="pending, delivered or failed.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Messages cast to a node, newest first."""
    with connect(ctx, url, token) as client:
        found = client.inbox(node, status=status_, limit=limit)
    if as_json:
        print_json(found)
    else:
        out.print(display.inbox_table(found))
