"""Object storage over the MinIO SDK (any S3 server: MinIO, SeaweedFS, AWS).

Every S3/network failure is translated here, once: missing keys become `NotFound`,
everything else `StorageError` (retryable, HTTP 503 + Retry-After).
"""
from __future__ import annotations

import io
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import BinaryIO, Iterator

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error

from core.errors import NotFound, StorageError

PART_SIZE = 8 * 1024 * 1024
_MISSING = {"NoSuchKey", "NoSuchObject", "NoSuchBucket", "ResourceNotFound"}


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    content_type: str | None = None
    version_id: str | None = None  # set by `list_versions`


@contextmanager
def _translated(key: str = "") -> Iterator[None]:
    try:
        yield
    except S3Error as exc:
        if exc.code in _MISSING:
            raise NotFound(f"object not found: {key}", code="object_not_found") from exc
        raise StorageError(f"S3 error {exc.code} on {key}: {exc.message}") from exc
    except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        raise StorageError(f"S3 unavailable ({type(exc).__name__}) on {key}") from exc


class ObjectStore:
    """A bucket on an S3 server, with the few operations the product needs."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str,
                 *, secure: bool = False, region: str = "us-east-1", timeout_s: float = 10.0,
                 object_lock: bool = False) -> None:
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=2.0, read=timeout_s), maxsize=64,
            retries=urllib3.Retry(total=2, backoff_factor=0.1, status_forcelist=[500, 502, 503, 504]),
        )
        self.bucket = bucket
        self._http = http  # streamed PUTs (`begin_put`) share the pool
        self.object_lock = object_lock  # create the bucket with object lock (legal holds enforced)
        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key,
                            secure=secure, region=region, http_client=http)

    @classmethod
    def from_settings(cls, s: "object") -> "ObjectStore":
        return cls(s.s3_endpoint, s.s3_access_key, s.s3_secret_key, s.s3_bucket,  # type: ignore[attr-defined]
                   secure=s.s3_secure, region=s.s3_region,  # type: ignore[attr-defined]
                   object_lock=getattr(s, "s3_object_lock", False))

    def ensure_bucket(self) -> None:
        with _translated(self.bucket):
            if not self.client.bucket_exists(self.bucket):
                self.client.make_bucket(self.bucket, object_lock=self.object_lock)

    def ping(self) -> None:
        """Raise StorageError unless the server answers for our bucket."""
        with _translated(self.bucket):
            if not self.client.bucket_exists(self.bucket):
                raise StorageError(f"bucket {self.bucket} missing")

    def put_stream(self, key: str, stream: BinaryIO, length: int = -1,
                   content_type: str = "application/octet-stream", metadata: dict | None = None) -> None:
        """Upload from a file-like object; unknown length streams in PART_SIZE parts."""
        with _translated(key):
            self.client.put_object(self.bucket, key, stream, length, content_type=content_type,
                                   part_size=PART_SIZE if length < 0 or length > PART_SIZE else 0,
                                   metadata=metadata)

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.put_stream(key, io.BytesIO(data), len(data), content_type)

    def put_file(self, key: str, path: str, content_type: str = "application/octet-stream") -> None:
        with _translated(key):
            self.client.fput_object(self.bucket, key, path, content_type=content_type, part_size=PART_SIZE)

    def get_bytes(self, key: str) -> bytes:
        with self.open(key) as resp:
            return resp.read()

    @contextmanager
    def open(self, key: str, offset: int = 0, length: int = 0) -> Iterator[urllib3.BaseHTTPResponse]:
        """Stream an object (or a byte range of it); the response is released on exit."""
        with _translated(key):
            resp = self.client.get_object(self.bucket, key, offset=offset, length=length)
        try:
            with _translated(key):
                yield resp
        finally:
            resp.close()
            resp.release_conn()

    def iter_range(self, key: str, offset: int = 0, length: int = 0, block: int = 256 * 1024) -> Iterator[bytes]:
        """Yield the bytes of an object range in blocks (for HTTP Range responses)."""
        with self.open(key, offset, length) as resp:
            while True:
                with _translated(key):
                    data = resp.read(block)
                if not data:
                    return
                yield data

    def download(self, key: str, path: str) -> None:
        with _translated(key):
            self.client.fget_object(self.bucket, key, path)

    def stat(self, key: str) -> ObjectInfo:
        with _translated(key):
            st = self.client.stat_object(self.bucket, key)
        return ObjectInfo(key=key, size=st.size or 0, etag=st.etag or "", content_type=st.content_type)

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except NotFound:
            return False
        return True

    def presign_get(self, key: str, expires_s: int = 3600) -> str:
        with _translated(key):
            return self.client.presigned_get_object(self.bucket, key, expires=timedelta(seconds=expires_s))

    def presign_put(self, key: str, expires_s: int = 3600) -> str:
        with _translated(key):
            return self.client.presigned_put_object(self.bucket, key, expires=timedelta(seconds=expires_s))

    def list(self, prefix: str) -> list[ObjectInfo]:
        with _translated(prefix):
            return [ObjectInfo(key=o.object_name, size=o.size or 0, etag=o.etag or "")
                    for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=True)]

    def delete(self, key: str) -> None:
        with _translated(key):
            self.client.remove_object(self.bucket, key)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix`; return how many were deleted."""
        keys = [o.key for o in self.list(prefix)]
        with _translated(prefix):
            errors = list(self.client.remove_objects(self.bucket, (DeleteObject(k) for k in keys)))
        if errors:
            raise StorageError(f"{len(errors)} objects under {prefix} could not be deleted")
        return len(keys)

    # ---------------------------------------------------------------- legal holds (object lock)

    def legal_hold_enforced(self) -> bool:
        """Does the server refuse to delete an object under legal hold? Probed with a scratch
        object: written, put on hold, deleted by version (refused = enforced), released, removed.
        False where the bucket was made without object lock (the local SeaweedFS bucket) or the
        server has no legal holds; MinIO and SeaweedFS enforce them in object-lock buckets."""
        key = f"_probe/legal-hold/{uuid.uuid4().hex}"
        self.put_bytes(key, b"legal hold probe")
        with _translated(key):
            version = self.client.stat_object(self.bucket, key).version_id
            try:
                self.client.enable_object_legal_hold(self.bucket, key, version)
            except S3Error:  # no object lock on this bucket, or no legal holds on this server
                self.client.remove_object(self.bucket, key, version_id=version)
                return False
            try:
                self.client.remove_object(self.bucket, key, version_id=version)
            except S3Error:
                self.client.disable_object_legal_hold(self.bucket, key, version)
                self.client.remove_object(self.bucket, key, version_id=version)
                return True
        return False  # deleted although on hold

    def set_legal_hold(self, key: str, on: bool, version_id: str | None = None) -> None:
        """Put one version of an object (default: the current one) on legal hold, or release it."""
        with _translated(key):
            if on:
                self.client.enable_object_legal_hold(self.bucket, key, version_id)
            else:
                self.client.disable_object_legal_hold(self.bucket, key, version_id)

    def list_versions(self, prefix: str) -> list[ObjectInfo]:
        """Every stored version (and delete marker, size 0) under `prefix`: in a versioned
        (object-lock) bucket an overwritten or deleted object keeps its old bytes as versions."""
        with _translated(prefix):
            return [ObjectInfo(key=o.object_name, size=o.size or 0, etag=o.etag or "", version_id=o.version_id)
                    for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=True,
                                                      include_version=True)]

    def purge(self, key: str, versions: list[str | None] | None = None) -> None:
        """Delete an object for good: every version and delete marker of it (`versions`, else
        listed), so a versioned bucket keeps no old bytes. A missing key is not an error."""
        if versions is None:
            versions = [o.version_id for o in self.list_versions(key) if o.key == key]
        with _translated(key):
            for version in versions or [None]:
                self.client.remove_object(self.bucket, key, version_id=version)


# ---------------------------------------------------------------- streaming PUT + server-side copy

_END = None


class StreamingPut:
    """One PUT whose body arrives piece by piece (`feed`), sent while it arrives.

    The minio SDK reads a whole part into memory before sending it, so the request is made
    here with urllib3 against a presigned URL (the payload is not signed: the caller hashes
    it) and a generator body of the declared `length`. `finish` waits for the answer and
    checks the server's ETag against the MD5 of what was sent; `abort` (or a length that
    does not add up) breaks the request off, so the server never keeps the object.
    """

    def __init__(self, store: ObjectStore, key: str, length: int, content_type: str) -> None:
        import hashlib
        import queue
        import threading

        self.store, self.key, self.length = store, key, length
        self._pieces: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=8)
        self._md5, self._sent, self._aborted = hashlib.md5(usedforsecurity=False), 0, False
        self._error: BaseException | None = None
        self._etag = ""
        url = store.presign_put(key, expires_s=900)
        self._thread = threading.Thread(target=self._send, args=(url, content_type), daemon=True,
                                        name=f"s3-put-{key[-24:]}")
        self._thread.start()

    def _body(self) -> Iterator[bytes]:
        # Each batch is sent once the next one arrives, so the last batch goes only on `finish`:
        # until then the server holds less than `length` bytes, and an `abort` (the body failed
        # its checks) leaves no object behind, whatever the caller had fed.
        held: list[bytes] = []
        while (pieces := self._pieces.get()) is not _END:
            if self._aborted:
                raise OSError("upload aborted")
            yield from self._send_pieces(held)
            held = pieces
        if self._aborted:
            raise OSError(f"upload aborted after {self._sent} of {self.length} bytes")
        yield from self._send_pieces(held)
        if self._sent != self.length:
            raise OSError(f"upload aborted after {self._sent} of {self.length} bytes")

    def _send_pieces(self, pieces: list[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            self._md5.update(piece)
            self._sent += len(piece)
            yield piece

    def _send(self, url: str, content_type: str) -> None:
        try:
            resp = self.store._http.request(
                "PUT", url, body=self._body(), retries=False, preload_content=True,
                headers={"Content-Length": str(self.length), "Content-Type": content_type})
            if resp.status != 200:
                raise StorageError(f"S3 answered {resp.status} to the streamed PUT of {self.key}")
            self._etag = (resp.headers.get("ETag") or "").strip('"')
        except BaseException as exc:  # noqa: BLE001 — kept for finish(), which translates it; feed() stops
            self._error = exc
            self._aborted = True
            while not self._pieces.empty():
                self._pieces.get_nowait()

    def feed(self, pieces: list[bytes]) -> None:
        """Hand over the next pieces (blocks while 8 batches wait: back-pressure on the client)."""
        self._put(pieces)

    def _put(self, item: list[bytes] | None) -> None:
        import queue

        while not self._aborted:
            try:
                self._pieces.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Wait for the server's answer; StorageError unless it holds exactly the bytes fed."""
        self._put(_END)
        self._thread.join()
        if self._error is not None:
            if isinstance(self._error, StorageError):
                raise self._error
            raise StorageError(f"S3 unavailable ({type(self._error).__name__}) on {self.key}") from self._error
        if "-" not in self._etag and self._etag and self._etag != self._md5.hexdigest():
            raise StorageError(f"S3 stored other bytes than were sent for {self.key} (ETag {self._etag})")

    def abort(self) -> None:
        """Break the request off (the body raises): the server keeps nothing."""
        import contextlib
        import queue

        self._aborted = True
        if self._thread.is_alive():
            with contextlib.suppress(queue.Full):  # full: the sender takes the next batch and sees the flag
                self._pieces.put_nowait(_END)
        self._thread.join(timeout=30)


def begin_put(store: ObjectStore, key: str, length: int, content_type: str) -> StreamingPut:
    """Start a PUT of `length` bytes to `key` that is fed while the bytes arrive."""
    with _translated(key):
        return StreamingPut(store, key, length, content_type)


def copy_object(store: ObjectStore, src: str, dst: str) -> None:
    """Server-side copy within the bucket (the bytes do not pass through us)."""
    from minio.commonconfig import CopySource

    with _translated(dst):
        store.client.copy_object(store.bucket, dst, CopySource(store.bucket, src))
