"""The node page browses its storage's directories, never leaving it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.test import Client

from nodes.models import Node
from nodes.services import node_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def node(storage: Path) -> Node:
    made = node_create(name="node_1")
    root = Path(made.storage_root)
    (root / "ckpt" / "shards").mkdir(parents=True)
    (root / "ckpt" / "config.json").write_text("{}")
    (root / "ckpt" / "shards" / "a.bin").write_bytes(b"x" * 1000)
    (root / "top.txt").write_text("hello")
    (storage / "secret.txt").write_text("outside")
    return made


def test_the_root_lists_directories_first_with_their_files_and_bytes(browser: Client, node: Node) -> None:
    text = browser.get("/nodes/node_1/").content.decode()
    assert text.index('href="?dir=ckpt">ckpt/</a>') < text.index("top.txt")
    assert "2 files" in text and "1002 B" in text
    assert ".castray" not in text.split('id="node-files"')[1].split("</section>")[0]


def test_a_subdirectory_is_browsed_by_clicking_into_it(browser: Client, node: Node) -> None:
    text = browser.get("/nodes/node_1/?dir=ckpt").content.decode()
    files = text.split('id="node-files"')[1].split("</section>")[0]
    assert 'href="?dir=ckpt/shards">shards/</a>' in files and "config.json" in files
    assert "top.txt" not in files
    deeper = browser.get("/nodes/node_1/?dir=ckpt/shards").content.decode()
    assert "a.bin" in deeper and "1000 B" in deeper
    assert 'href="?dir=ckpt">ckpt</a>' in deeper  # the way back up


@pytest.mark.parametrize("where", ["..", "../", "ckpt/../..", "/etc", "/", "outside"])
def test_paths_that_leave_the_storage_are_refused(browser: Client, node: Node, storage: Path, where: str) -> None:
    os.symlink(storage, Path(node.storage_root) / "outside")
    answer = browser.get("/nodes/node_1/", {"dir": where})
    assert answer.status_code == 200
    files = answer.content.decode().split('id="node-files"')[1].split("</section>")[0]
    assert "secret.txt" not in files and "passwd" not in files and "top.txt" not in files
    problem = files.split('colspan="4" class="muted">')[1].split("</td>")[0]
    assert "storage" in problem and "Nothing here" not in problem  # the reason is shown


def test_a_link_out_of_the_storage_is_not_listed(browser: Client, node: Node, storage: Path) -> None:
    os.symlink(storage, Path(node.storage_root) / "outside")
    files = browser.get("/nodes/node_1/").content.decode().split('id="node-files"')[1].split("</section>")[0]
    assert "outside" not in files and "top.txt" in files
