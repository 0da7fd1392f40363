"""The driver contract, the same tests for every driver (local, s3, gcs, azure), run against
real emulators through the official SDKs. A driver passes when it behaves like the others."""

from __future__ import annotations

import hashlib
import io
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from drivers import AlreadyExists, InvalidKey, NotFound, PermissionDenied
from drivers.cloud import CHUNK_SIZE
from emulators import KINDS, FlakyProxy, new_store

ODD_KEYS = [
    "with space.jpg", "ünïcødé/猫.png", "hash#1.jpg", "q?.jpg", "pct%20.jpg", "plus+sign.jpg",
    "a%2Fb.jpg", "amp&eq=semi;.jpg", "tilde~(1).jpg", "deep/er/still/x.bin", "'quote\".jpg",
]
BIG_COUNT = 1050  # more than one 1,000-object page


class Unseekable(io.RawIOBase):
    """A stream that can only be read forward, like a socket or a pipe."""

    def __init__(self, size: int, byte: bytes = b"z"):
        self.left, self.byte = size, byte

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        count = min(len(target), self.left)
        target[:count] = self.byte * count
        self.left -= count
        return count


def keys(driver, prefix: str = "") -> list[str]:
    return sorted(info.key for page in driver.list_pages(prefix) for info in page)


@pytest.fixture(scope="session", params=KINDS)
def big_store(request, endpoint_for, tmp_path_factory):
    """A folder of BIG_COUNT objects (plus hidden ones), written once per session."""
    store = new_store(request.param, endpoint_for, tmp_path_factory)
    names = [f"{store.path}/img/{i:05d}.jpg" for i in range(BIG_COUNT)]
    names += [f"{store.path}/.dataloop/thumbnails/{i:05d}.jpg" for i in range(20)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: store.write_raw(name, name.encode()), names))
    return store


# -- listing ------------------------------------------------------------------------------

def test_listing_streams_pages_past_1000_objects(big_store):
    driver = big_store.make()
    if getattr(driver.inner, "page_size", 1000) > 1000:  # Azure asks for 5,000 a page
        driver.inner.page_size = 1000
    sizes = [len(page) for page in driver.list_pages()]
    assert len(sizes) >= 2 and max(sizes) <= 1000, sizes
    listed = keys(driver)
    assert listed == [f"img/{i:05d}.jpg" for i in range(BIG_COUNT)]
    info = next(iter(driver.list("img/00007")))
    assert info.size == len(f"{big_store.path}/img/00007.jpg")


def test_listing_gives_size_mtime_etag_and_real_md5(store):
    driver = store.make()
    before = time.time()
    driver.put("a.txt", b"hello")
    [info] = [i for page in driver.list_pages() for i in page]
    assert (info.key, info.size) == ("a.txt", 5)
    assert before - 5 <= info.mtime <= time.time() + 5
    assert info.etag
    if driver.features.content_md5:
        assert info.md5 == hashlib.md5(b"hello").hexdigest()
    else:
        assert info.md5 is None
    assert driver.stat("a.txt") == info


def test_odd_keys_round_trip(store):
    driver = store.make()
    for key in ODD_KEYS:
        assert driver.put(key, key.encode()).key == key
    assert keys(driver) == sorted(ODD_KEYS)
    for key in ODD_KEYS:
        assert driver.stat(key).size == len(key.encode())
        assert driver.read(key) == key.encode()
    assert keys(driver, "ünïcødé/") == ["ünïcødé/猫.png"]
    for key in ODD_KEYS:
        driver.delete(key)
    assert keys(driver) == []


@pytest.mark.parametrize("page_size", [1000, 2])
def test_hidden_folder_folder_markers_and_other_folders_are_not_listed(store, page_size):
    driver = store.make()
    driver.inner.page_size = page_size  # 2: pages end inside the hidden folder
    for key in ["a.txt", "-dash.txt", ".a", ".dataloop0.txt", ".dataloopy/x", "z.txt",
                "sub/.dataloop/kept.txt", ".dataloop/thumbnails/a.jpg", ".dataloop/x.json"]:
        driver.put(key, key.encode())
    store.write_raw("outside.txt", b"not in the folder")
    store.write_raw("data-sibling/x.txt", b"not in the folder either")
    if store.kind != "local":
        store.write_raw(f"{store.path}/empty/", b"")  # a console-made "folder"
    # A nested dataset's .dataloop/ is hidden too (issue 11).
    assert keys(driver) == sorted(["a.txt", "-dash.txt", ".a", ".dataloop0.txt", ".dataloopy/x",
                                   "z.txt"])
    assert keys(driver, ".data") == [".dataloop0.txt", ".dataloopy/x"]
    assert keys(driver, ".dataloop/") == []
    assert driver.read(".dataloop/x.json") == b".dataloop/x.json"  # reachable, never listed


def test_a_single_file_path_is_refused(store):
    store.write_raw(f"{store.path}/photo.jpg", b"jpeg")
    driver = store.make(path=f"{store.path}/photo.jpg")
    with pytest.raises(NotFound) as error:
        keys(driver)
    assert error.value.code == "NotAFolder"
    assert "is a file, not a folder" in str(error.value)


def test_unknown_bucket_is_not_found(store):
    if store.kind == "local":
        driver = store.make(root=str(store.root / "no-such-folder"))
    else:
        key = "container" if store.kind == "azure" else "bucket"
        driver = store.make(**{key: "no-such-bucket-here"})
    with pytest.raises(NotFound) as error:
        keys(driver)
    assert error.value.code in {"NoSuchBucket", "ContainerNotFound", "NoSuchFolder"}


# -- reading ------------------------------------------------------------------------------

def test_ranged_reads(store):
    driver = store.make()
    data = bytes(range(256)) * 4
    driver.put("blob.bin", data)
    assert driver.read("blob.bin") == data
    assert driver.read("blob.bin", offset=10, length=20) == data[10:30]
    assert driver.read("blob.bin", offset=1000) == data[1000:]
    assert driver.read("blob.bin", length=7) == data[:7]
    assert driver.read("blob.bin", offset=1020, length=100) == data[1020:]
    assert driver.read("blob.bin", offset=5000) == b""
    assert driver.read("blob.bin", offset=3, length=0) == b""
    with driver.open("blob.bin", offset=100) as stream:
        assert stream.read(10) == data[100:110]
        assert stream.read(5) == data[110:115]
        assert stream.read() == data[115:]


def test_missing_objects_are_not_found(store):
    driver = store.make()
    for call in (lambda: driver.stat("nope.jpg"), lambda: driver.open("nope.jpg"),
                 lambda: driver.read("nope.jpg", offset=2, length=2),
                 lambda: driver.delete("nope.jpg")):
        with pytest.raises(NotFound):
            call()
    assert not driver.exists("nope.jpg")


# -- writing ------------------------------------------------------------------------------

def test_put_overwrites_and_returns_the_new_info(store):
    driver = store.make()
    first = driver.put("a/b.txt", b"one")
    second = driver.put("a/b.txt", io.BytesIO(b"second"), content_type="text/plain")
    assert (first.size, second.size) == (3, 6)
    assert second.etag != first.etag
    assert driver.read("a/b.txt") == b"second"
    assert driver.stat("a/b.txt") == second


def test_puts_use_the_configured_storage_class(store):
    """Every cloud driver here is made with a storage_class (emulators.STORAGE_CLASSES): each
    kind of put (bytes, a small stream, a chunked stream, conditional) must carry it."""
    from emulators import STORAGE_CLASSES

    driver = store.make()
    driver.put("small.txt", b"s")
    driver.put("stream.txt", io.BytesIO(b"stream"), content_type="text/plain")
    driver.put("once.txt", b"o", overwrite=False)
    driver.put("big.bin", Unseekable(CHUNK_SIZE + 1024))
    if store.kind == "local":
        return
    wanted = STORAGE_CLASSES[store.kind]
    checked = ["small.txt", "stream.txt", "once.txt", "big.bin"]
    if store.kind == "gcs":
        # fake-gcs-server ignores the object metadata of resumable uploads (GCS keeps it;
        # the SDK sends the blob's storageClass in the upload's first request).
        checked.remove("big.bin")
    for key in checked:
        assert store.storage_class(f"{store.path}/{key}") == wanted, key


def test_conditional_put_never_overwrites(store):
    driver = store.make()
    assert driver.features.conditional_put
    driver.put("once.txt", b"first", overwrite=False)
    with pytest.raises(AlreadyExists):
        driver.put("once.txt", b"second", overwrite=False)
    if store.kind == "gcs":
        # fake-gcs-server ignores ifGenerationMatch on resumable uploads (GCS honours it):
        # check that the chunked upload asks for it.
        proxy = FlakyProxy(store.endpoint.url)
        try:
            store.make(endpoint_url=proxy.url).put("other.txt", Unseekable(CHUNK_SIZE + 1024),
                                                   overwrite=False)
        finally:
            proxy.close()
        assert any("uploadType=resumable" in p and "ifGenerationMatch=0" in p
                   for p in proxy.paths), proxy.paths
    else:
        with pytest.raises(AlreadyExists):  # the chunked path too
            driver.put("once.txt", Unseekable(CHUNK_SIZE + 1024), overwrite=False)
    assert driver.read("once.txt") == b"first"


def test_large_streams_are_uploaded_in_chunks(store):
    """A put of a stream larger than a chunk goes through the SDK's chunked upload: the
    stream is read forward only, and on S3 the ETag shows the parts (it is not an MD5)."""
    driver = store.make()
    size = CHUNK_SIZE + 1024
    info = driver.put("big.bin", Unseekable(size), overwrite=False)
    assert info.size == size
    with driver.open("big.bin", offset=size - 10) as stream:
        assert stream.read() == b"z" * 10
    digest = hashlib.md5(b"z" * size).hexdigest()
    if store.kind == "s3":
        assert info.etag.endswith("-2") and info.md5 is None
    elif store.kind == "gcs":
        assert info.md5 == digest
    assert info.md5 in (None, digest)
    assert driver.stat("big.bin") == info


def test_over_long_names_are_refused_before_any_request(store):
    """Clouds take object names of up to 1,024 bytes; local filesystems take file names of
    up to 255 bytes (and longer paths). Past that: InvalidKey, permanent, naming the limit."""
    driver = store.make()
    long_file = "x" * 256 + ".jpg"
    long_path = "/".join(["y" * 200] * 6)  # 1,205 bytes
    refused, accepted = (long_file, long_path) if store.kind == "local" else (long_path, long_file)
    with pytest.raises(InvalidKey) as error:
        driver.put(refused, b"a")
    assert error.value.code == "KeyTooLong" and not error.value.retriable
    assert "name too long" in str(error.value) and len(str(error.value)) < 300
    assert driver.put(accepted, b"a").key == accepted
    assert keys(driver) == [accepted]


def test_delete(store):
    driver = store.make()
    driver.put("gone/a.txt", b"a")
    driver.put("kept.txt", b"k")
    driver.delete("gone/a.txt")
    assert keys(driver) == ["kept.txt"]
    assert not driver.exists("gone/a.txt")


# -- permissions --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_permissions_are_enforced_before_any_request(kind, tmp_path):
    """The driver points at nothing reachable: a refusal that is not PermissionDenied
    (NotConfigured) would mean a request was tried."""
    from emulators import Endpoint, Store, free_port

    dead = f"http://127.0.0.1:{free_port()}"
    credentials = {"s3": {"access_key_id": "k", "secret_access_key": "s", "region": "us-east-1"},
                   "gcs": {"anonymous": True},
                   "azure": {"connection_string": "DefaultEndpointsProtocol=http;AccountName=a;"
                                                  f"AccountKey=a2V5;BlobEndpoint={dead}/a;"},
                   "local": {}}[kind]
    store = Store(kind, "bucket", Endpoint(kind, dead, credentials), tmp_path / "missing")
    guarded = store.make(permissions=["get"], allow_delete=False)
    calls = {
        "list": lambda: keys(guarded),
        "put": lambda: guarded.put("a.txt", b"a"),
        "delete": lambda: guarded.delete(".dataloop/a.txt"),
    }
    for permission, call in calls.items():
        with pytest.raises(PermissionDenied) as error:
            call()
        assert error.value.code == "NotConfigured" and permission in str(error.value)
    with pytest.raises(PermissionDenied, match="allow_delete"):
        store.make(allow_delete=False).delete("a.txt")
