"""`castray send` and `castray inbox` through the real worker and the node actors' inboxes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.client.helpers import castray, castray_json, said, wait_for

pytestmark = pytest.mark.ray


def test_send_text_and_json_then_read_them_in_the_inboxes(server, env: dict[str, str], tmp_path: Path) -> None:
    code, sent = castray_json("send", "--to", "node_2,node_3", "--from", "node_1", "hello from the client", env=env)
    assert code == 0 and sent["sender"] == "node_1"
    assert sorted(d["node"] for d in sent["deliveries"]) == ["node_2", "node_3"]

    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"epoch": 3, "loss": 0.25}))
    code, sent_json = castray_json("send", "--to", "node_3", "--from", "node_1", "--json-file", str(payload), env=env)
    assert code == 0 and sent_json["message_type"] == "json"

    def delivered() -> list:
        code, inbox = castray_json("inbox", "node_3", "--status", "delivered", env=env)
        assert code == 0
        return inbox if len(inbox) >= 2 else []

    inbox = wait_for("both messages delivered to node_3", delivered, timeout=60)
    assert [(m["id"], m["sender"], m["message_type"]) for m in inbox[:2]] == [
        (sent_json["id"], "node_1", "json"),
        (sent["id"], "node_1", "text"),
    ]
    assert json.loads(inbox[0]["content"]) == {"epoch": 3, "loss": 0.25}
    assert inbox[1]["content"] == "hello from the client"

    result = castray("inbox", "node_2", env=env)
    assert result.returncode == 0 and "hello from the client" in result.stdout


def test_send_refuses_a_json_file_that_is_not_json(server, env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = castray("send", "--to", "node_2", "--json-file", str(bad), env=env)
    assert result.returncode == 2 and "is not JSON" in said(result.stderr)
