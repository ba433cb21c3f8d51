"""Names a receiver writes under: confined to the storage root (see also tests/test_storage.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplane.storage import UnsafePath, resolve_in

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "name",
    ["/srv/f.bin", "../f.bin", "a/../../f.bin", "f.bin.part", "a/f.part", ".castray/partial/x.json", "./.castray/x"],
)
def test_resolve_in_refuses_names_outside_or_reserved(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafePath):
        resolve_in(tmp_path, name)


def test_a_new_file_under_a_directory_linked_outside_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "out").symlink_to(outside)
    with pytest.raises(UnsafePath, match="symbolic link"):
        resolve_in(root, "out/new.bin")  # does not exist yet: a receiver is about to create it


def test_a_dangling_link_pointing_outside_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.bin").symlink_to(tmp_path / "not-yet")
    with pytest.raises(UnsafePath, match="symbolic link"):
        resolve_in(root, "f.bin")
