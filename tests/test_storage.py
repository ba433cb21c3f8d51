from pathlib import Path

import pytest

from dataplane.storage import Digester, UnsafePath, clean_name, compute_manifest, resolve_in


@pytest.mark.parametrize(
    "name",
    ["/etc/passwd", "../x", "a/../../x", "a/..", "", "   ", ".castray/manifests/x", "x.part", "a\\b", "a\x00b", "C:/x"],
)
def test_it_rejects_unsafe_names(name: str) -> None:
    with pytest.raises(UnsafePath):
        clean_name(name)


def test_it_normalises_safe_names() -> None:
    assert clean_name("./data//file.bin") == "data/file.bin"
    assert clean_name("a/b/c.txt") == "a/b/c.txt"


def test_it_rejects_symlinks_that_leave_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    (root / "link.txt").symlink_to(outside)
    (root / "dirlink").symlink_to(tmp_path)
    with pytest.raises(UnsafePath, match="symbolic link"):
        resolve_in(root, "link.txt")
    with pytest.raises(UnsafePath, match="symbolic link"):
        resolve_in(root, "dirlink/secret.txt")


def test_it_allows_symlinks_inside_the_root(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_text("x")
    (tmp_path / "alias.txt").symlink_to(tmp_path / "real.txt")
    assert resolve_in(tmp_path, "alias.txt") == tmp_path / "alias.txt"


def test_manifest_matches_streamed_digest(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000 + b"tail"
    (tmp_path / "f").write_bytes(data)
    digester = Digester(4096)
    for i in range(0, len(data), 1000):  # pieces that straddle chunk edges
        digester.update(data[i : i + 1000])
    assert digester.manifest() == compute_manifest(tmp_path / "f", 4096)
    assert digester.manifest().chunk_count == -(-len(data) // 4096)
