import io

import pytest

from core.errors import NotFound, StorageError
from core.storage import ObjectStore


def test_put_get_range_list_delete(store: ObjectStore) -> None:
    data = bytes(range(256)) * 1000
    store.put_stream("acme/recordings/r1/chunks/t/000001.webm", io.BytesIO(data), -1, "video/webm")
    store.put_bytes("acme/recordings/r1/chunks/t/000002.webm", b"two")
    assert store.get_bytes("acme/recordings/r1/chunks/t/000001.webm") == data
    assert b"".join(store.iter_range("acme/recordings/r1/chunks/t/000001.webm", 1000, 500)) == data[1000:1500]
    keys = [o.key for o in store.list("acme/recordings/r1/")]
    assert keys == ["acme/recordings/r1/chunks/t/000001.webm", "acme/recordings/r1/chunks/t/000002.webm"]
    assert store.stat("acme/recordings/r1/chunks/t/000002.webm").size == 3
    assert store.presign_get("acme/recordings/r1/chunks/t/000002.webm").startswith("http://")
    assert store.delete_prefix("acme/recordings/r1/") == 2
    assert store.list("acme/recordings/r1/") == []


def test_missing_key_is_not_found(store: ObjectStore) -> None:
    with pytest.raises(NotFound):
        store.get_bytes("acme/nope")
    assert not store.exists("acme/nope")


def test_unreachable_server_is_storage_error() -> None:
    from recorder.services import free_port

    dead = ObjectStore(f"127.0.0.1:{free_port()}", "a", "b", "bucket", timeout_s=1)
    with pytest.raises(StorageError) as info:
        dead.put_bytes("k", b"x")
    assert info.value.retryable
