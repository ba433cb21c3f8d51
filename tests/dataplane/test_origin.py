"""Origins fetched into a node's storage from real servers on loopback: HTTP (with drops, 404s,
stalls and the cache) and moto's S3 server through boto3."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataplane.contract import OriginPolicy
from dataplane.origin import OriginCache
from dataplane.origin_url import OriginError, address_problem, default_name, parse_origin, sanitize_url, vet_host
from dataplane.storage import ManifestCache
from tests.origin_servers import OriginState, http_origin, moto_s3

pytestmark = pytest.mark.unit

CHUNK = 64 * 1024
LOCAL = OriginPolicy(allow_private=True, timeout=5, cache_bytes=1 << 30)


@pytest.fixture
def origin() -> Iterator[tuple[str, OriginState]]:
    with http_origin() as server:
        yield server


@pytest.fixture
def cache(tmp_path: Path) -> OriginCache:
    return OriginCache(tmp_path, ManifestCache(tmp_path))


def test_a_dropped_connection_is_resumed_with_range_and_verified(origin, cache, tmp_path) -> None:
    base, state = origin
    data = os.urandom(3 * CHUNK + 17)
    state.put("/model.bin", data)
    state.drop_first_get = True
    path, manifest = cache.fetch(f"{base}/model.bin", "model.bin", CHUNK, LOCAL)
    assert path.read_bytes() == data
    assert manifest.sha256 == hashlib.sha256(data).hexdigest()
    ranges = [r.range for r in state.gets("/model.bin")]
    assert ranges == ["", f"bytes={len(data) // 2}-"]


def test_an_unchanged_object_is_answered_from_the_cache(origin, cache) -> None:
    base, state = origin
    state.put("/a.bin", b"x" * 1000)
    cache.fetch(f"{base}/a.bin", "a.bin", CHUNK, LOCAL)
    _path, manifest = cache.fetch(f"{base}/a.bin", "copy/a.bin", CHUNK, LOCAL)
    assert len(state.gets("/a.bin")) == 1  # the second cast only asked (HEAD)
    assert manifest.size == 1000 and cache.fetches == 1
    state.put("/a.bin", b"y" * 1000)  # a new ETag
    path, _ = cache.fetch(f"{base}/a.bin", "a.bin", CHUNK, LOCAL)
    assert path.read_bytes() == b"y" * 1000 and len(state.gets("/a.bin")) == 2


def test_the_cache_keeps_to_its_bound_dropping_the_least_recently_used(origin, cache) -> None:
    base, state = origin
    for name in ("one", "two", "three"):
        state.put(f"/{name}", name.encode().ljust(300, b"."))
    small = OriginPolicy(allow_private=True, timeout=5, cache_bytes=700)
    for name in ("one", "two", "one", "three"):
        cache.fetch(f"{base}/{name}", name, CHUNK, small)
    kept = {entry["url"].rsplit("/", 1)[1] for entry in cache._index().values()}
    assert kept == {"one", "three"}  # "two" was used least recently
    assert (cache.root / "two").read_bytes() == b"two".ljust(300, b".")  # the storage's copy stays


def test_a_missing_object_and_a_stall_end_with_the_reason(origin, cache) -> None:
    base, _state = origin
    with pytest.raises(OriginError, match="answered 404 Not Found"):
        cache.fetch(f"{base}/nothing", "nothing", CHUNK, LOCAL)
    with pytest.raises(OriginError, match="did not answer within 0.5 s"):
        cache.fetch(f"{base}/slow", "slow", CHUNK, OriginPolicy(allow_private=True, timeout=0.5))
    assert not any(cache.dir.glob("*.part"))


def test_a_refused_connection_is_named(cache) -> None:
    with pytest.raises(OriginError, match="refused the connection"):
        cache.fetch("http://127.0.0.1:9/x", "x", CHUNK, LOCAL)


def test_metadata_link_local_and_unless_allowed_private_addresses_are_refused(origin, cache) -> None:
    with pytest.raises(OriginError, match="cloud metadata"):
        cache.fetch("http://169.254.169.254/latest/meta-data/", "m", CHUNK, LOCAL)
    with pytest.raises(OriginError, match="metadata"):
        cache.fetch("http://metadata.google.internal/x", "m", CHUNK, LOCAL)
    base, _ = origin
    with pytest.raises(OriginError, match="loopback or private"):
        cache.fetch(f"{base}/x", "x", CHUNK, OriginPolicy())
    assert address_problem("169.254.1.1", allow_private=True)
    assert address_problem("::ffff:169.254.169.254", allow_private=True)
    assert address_problem("fd00:ec2::254", allow_private=True)
    assert address_problem("10.0.0.1", allow_private=False)
    assert not address_problem("10.0.0.1", allow_private=True)
    assert not address_problem("93.184.216.34", allow_private=False)
    with pytest.raises(OriginError, match="loopback"):
        vet_host("localhost", 80, allow_private=False)


def test_only_http_https_and_s3_are_accepted_and_credentials_are_stripped() -> None:
    for bad in ("file:///etc/passwd", "ftp://host/x", "gopher://h/", "/local/path", ""):
        with pytest.raises(OriginError):
            parse_origin(bad)
    assert parse_origin("s3://bucket/prefix/").is_prefix
    assert not parse_origin("s3://bucket/key").is_prefix
    signed = "https://user:pw@host.example:8443/f.bin?X-Amz-Signature=abc&X-Amz-Credential=k&v=2#frag"
    assert sanitize_url(signed) == "https://host.example:8443/f.bin?v=2"
    assert default_name("https://host.example/dir/f.bin?x=1") == "f.bin"
    assert default_name("https://host.example/") == "host.example"


@pytest.fixture
def s3(monkeypatch) -> Iterator[str]:
    # moto accepts any credentials; these keep boto3 from looking for real ones.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with moto_s3() as endpoint:
        yield endpoint


def test_an_s3_object_is_fetched_through_boto3_with_an_endpoint_url(s3, cache) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=s3)
    client.create_bucket(Bucket="models")
    data = os.urandom(2 * CHUNK + 5)
    client.put_object(Bucket="models", Key="ckpt/shard-0.bin", Body=data)
    policy = OriginPolicy(s3_endpoint=s3, timeout=10)
    path, manifest = cache.fetch("s3://models/ckpt/shard-0.bin", "shard-0.bin", CHUNK, policy)
    assert path.read_bytes() == data and manifest.sha256 == hashlib.sha256(data).hexdigest()
    cache.fetch("s3://models/ckpt/shard-0.bin", "shard-0.bin", CHUNK, policy)
    assert cache.fetches == 1
    with pytest.raises(OriginError, match=r"does not exist \(404\)"):
        cache.fetch("s3://models/ckpt/none.bin", "none.bin", CHUNK, policy)
    with pytest.raises(OriginError, match="names a directory"):
        cache.fetch("s3://models/ckpt/", "ckpt", CHUNK, policy)


def test_an_s3_prefix_becomes_a_directory_fetched_object_by_object(s3, cache) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=s3)
    client.create_bucket(Bucket="ckpts")
    objects = {"run/a.json": b"{}", "run/shards/0.bin": os.urandom(CHUNK + 1), "run/shards/1.bin": b""}
    for key, body in objects.items():
        client.put_object(Bucket="ckpts", Key=key, Body=body)
    client.put_object(Bucket="ckpts", Key="other/x", Body=b"not under the prefix")
    policy = OriginPolicy(s3_endpoint=s3, timeout=10)
    assert cache.fetch_prefix("s3://ckpts/run/", "run", CHUNK, policy) == 3
    top = cache.root / "run"
    assert {p.relative_to(top).as_posix(): p.read_bytes() for p in top.rglob("*") if p.is_file()} == {
        k.removeprefix("run/"): v for k, v in objects.items()
    }
    client.delete_object(Bucket="ckpts", Key="run/a.json")
    assert cache.fetch_prefix("s3://ckpts/run/", "run", CHUNK, policy) == 2
    assert cache.fetches == 3  # the unchanged objects came from the cache
    assert not (top / "a.json").exists()
