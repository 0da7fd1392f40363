"""The local driver and the permission guard, on real files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import drivers
from drivers import AlreadyExists, InvalidKey, NotFound, PermissionDenied
from drivers.local import LocalDriver, LocalOptions

from conftest import put_file


def open_local(root: Path, **options) -> drivers.PermissionGuard:
    return drivers.open_driver(LocalOptions(name="disk", root=root, **options))


def keys(driver, prefix="") -> list[str]:
    return sorted(info.key for info in driver.list(prefix))


@pytest.fixture(params=["find", "scandir"])
def lister(request, monkeypatch):
    """Run a test with both listers: they must agree exactly."""
    if request.param == "scandir":
        monkeypatch.setattr(LocalDriver, "_pages_find", None)
        original = LocalDriver.__init__

        def init(self, options):
            original(self, options)
            self._find = None

        monkeypatch.setattr(LocalDriver, "__init__", init)
    return request.param


def test_both_listers_give_identical_results(storage):
    put_file(storage, "a/b/c.jpg", "abc")
    put_file(storage, "top.png", "t")
    find = LocalDriver(LocalOptions(name="d", root=storage))
    walk = LocalDriver(LocalOptions(name="d", root=storage))
    walk._find = None
    assert find._find, "GNU find is expected on this machine"
    assert sorted(find.list()) == sorted(walk.list())
    assert find.stat("a/b/c.jpg") == next(i for i in walk.list() if i.key == "a/b/c.jpg")


def test_listing_skips_hidden_folder_and_empty_folders(storage, lister):
    put_file(storage, ".dataloop/thumbnails/1.jpg")
    put_file(storage, "x/.dataloop/hidden-below-the-top-too.jpg")  # a nested dataset's (issue 11)
    (storage / "empty/deeper").mkdir(parents=True)
    put_file(storage, "kept.jpg")
    assert keys(open_local(storage)) == ["kept.jpg"]


def test_listing_pages_have_at_most_a_thousand_objects(storage, lister):
    for i in range(2500):
        put_file(storage, f"d{i // 500}/{i}.bin", b"")
    pages = list(open_local(storage).list_pages())
    assert sum(len(p) for p in pages) == 2500
    assert all(len(p) <= 1000 for p in pages)


def test_prefix_listing(storage, lister):
    for key in ["cats/a.jpg", "cats/b.jpg", "cathedral/c.jpg", "dogs/d.jpg"]:
        put_file(storage, key)
    driver = open_local(storage)
    assert keys(driver, "cats/") == ["cats/a.jpg", "cats/b.jpg"]
    assert keys(driver, "cat") == ["cathedral/c.jpg", "cats/a.jpg", "cats/b.jpg"]
    assert keys(driver, "cats/a") == ["cats/a.jpg"]
    assert keys(driver, "nothing/") == []


def test_driver_path_is_a_folder_inside_root(storage, lister):
    put_file(storage, "inside/sub/a.jpg")
    put_file(storage, "outside.jpg")
    driver = open_local(storage, path="inside")
    assert keys(driver) == ["sub/a.jpg"]
    assert driver.read("sub/a.jpg") == b"x"


@pytest.mark.parametrize("key", ["../etc/passwd", "/etc/passwd", "a/../../x", "a//b", "./a",
                                 "", "a/./b", "back\\slash", "nul\x00byte"])
def test_keys_cannot_escape_the_root(storage, key):
    driver = open_local(storage)
    with pytest.raises(InvalidKey):
        driver.read(key)
    with pytest.raises(InvalidKey):
        driver.put(key, b"x")


def test_symlinks_out_of_root_are_refused_and_not_listed(storage, tmp_path, lister):
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    os.symlink(secret, storage / "link-out.txt")
    os.symlink(tmp_path, storage / "dir-out")
    put_file(storage, "real.txt", "real")
    os.symlink(storage / "real.txt", storage / "link-in.txt")
    errors = []
    driver = open_local(storage)
    listed = sorted(i.key for page in driver.list_pages(on_error=lambda k, r: errors.append((k, r)))
                    for i in page)
    assert listed == ["link-in.txt", "real.txt"]
    assert sorted(k for k, _ in errors) == ["dir-out", "link-out.txt"]  # reported, not followed
    with pytest.raises(InvalidKey):
        driver.read("link-out.txt")
    with pytest.raises(InvalidKey):
        driver.read("dir-out/secret.txt")
    with pytest.raises(InvalidKey):
        driver.put("dir-out/new.txt", b"x")
    assert not (tmp_path / "new.txt").exists()


ODD = ["with space.jpg", "ünïcødé/猫.png", "hash#1.jpg", "q?.jpg", "pct%20.jpg", "plus+.jpg",
       "a..b.jpg", "semi;colon&amp.jpg"]


@pytest.mark.parametrize("key", ODD)
def test_odd_names_round_trip(storage, key):
    driver = open_local(storage)
    info = driver.put(key, key.encode())
    assert info.key == key and info.size == len(key.encode())
    assert driver.read(key) == key.encode()
    assert [i.key for i in driver.list()] == [key]
    assert (storage / key).read_bytes() == key.encode()


def test_ranged_reads(storage):
    put_file(storage, "a.bin", bytes(range(256)))
    driver = open_local(storage)
    assert driver.read("a.bin", offset=10, length=5) == bytes(range(10, 15))
    assert driver.read("a.bin", offset=250) == bytes(range(250, 256))
    assert driver.read("a.bin", length=3) == b"\x00\x01\x02"
    with driver.open("a.bin", offset=100, length=20) as stream:
        assert stream.read(8) == bytes(range(100, 108))
        assert stream.read() == bytes(range(108, 120))


def test_put_streams_and_is_atomic(storage, tmp_path):
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    driver = open_local(storage)
    with source.open("rb") as stream:
        info = driver.put("nested/deep/big.bin", stream)
    assert info.size == source.stat().st_size
    assert (storage / "nested/deep/big.bin").read_bytes() == source.read_bytes()
    assert not [p for p in (storage / "nested/deep").iterdir() if p.name.startswith(".syncd-")]


def test_conditional_put(storage):
    driver = open_local(storage)
    driver.put("a.txt", b"first", overwrite=False)
    with pytest.raises(AlreadyExists):
        driver.put("a.txt", b"second", overwrite=False)
    assert driver.read("a.txt") == b"first"
    driver.put("a.txt", b"third")
    assert driver.read("a.txt") == b"third"
    assert [p.name for p in storage.iterdir()] == ["a.txt"]  # no temp file left behind


def test_stat_and_not_found(storage):
    put_file(storage, "a/b.txt", "hello")
    driver = open_local(storage)
    info = driver.stat("a/b.txt")
    assert info.size == 5 and info.md5 is None and info.etag
    with pytest.raises(NotFound):
        driver.stat("a/missing.txt")
    with pytest.raises(NotFound):
        driver.stat("a")  # a folder is not an object
    with pytest.raises(NotFound):
        driver.read("missing")
    assert driver.exists("a/b.txt") and not driver.exists("nope")


def test_etag_survives_rename_and_changes_on_write(storage):
    path = put_file(storage, "a.txt", "one")
    driver = open_local(storage)
    before = driver.stat("a.txt").etag
    os.rename(path, storage / "b.txt")
    assert driver.stat("b.txt").etag == before
    (storage / "b.txt").write_text("two")
    assert driver.stat("b.txt").etag != before


def test_delete_removes_empty_parent_folders(storage):
    put_file(storage, "a/b/c.txt")
    put_file(storage, "a/keep.txt")
    driver = open_local(storage, allow_delete=True)
    driver.delete("a/b/c.txt")
    assert not (storage / "a/b").exists() and (storage / "a/keep.txt").exists()
    with pytest.raises(NotFound):
        driver.delete("a/b/c.txt")


def test_missing_root_is_not_found(tmp_path):
    driver = open_local(tmp_path / "nope")
    with pytest.raises(NotFound, match="does not exist"):
        list(driver.list_pages())


# -- permissions ---------------------------------------------------------------------------

class Spy(LocalDriver):
    """Records every call that reaches the real driver."""

    calls: list[str] = []

    def list_pages(self, prefix="", *, on_error=None):
        self.calls.append("list")
        return super().list_pages(prefix, on_error=on_error)

    def open(self, key, **kw):
        self.calls.append("get")
        return super().open(key, **kw)

    def put(self, key, data, **kw):
        self.calls.append("put")
        return super().put(key, data, **kw)

    def delete(self, key):
        self.calls.append("delete")
        return super().delete(key)


@pytest.mark.parametrize("missing", ["list", "get", "put", "delete"])
def test_calls_outside_permissions_never_reach_the_driver(storage, missing):
    put_file(storage, "a.txt")
    put_file(storage, ".dataloop/t.jpg")
    allowed = tuple(p for p in drivers.ALL_PERMISSIONS if p != missing)
    Spy.calls = []
    guard = drivers.PermissionGuard(Spy(LocalOptions(name="d", root=storage, permissions=allowed,
                                                     allow_delete=True)))
    calls = {
        "list": lambda: list(guard.list_pages()),
        "get": lambda: guard.read("a.txt"),
        "put": lambda: guard.put("b.txt", b"x"),
        "delete": lambda: guard.delete(".dataloop/t.jpg"),
    }
    with pytest.raises(PermissionDenied, match=f"'{missing}' permission"):
        calls[missing]()
    assert missing not in Spy.calls
    for other in allowed:
        calls[other]()
    assert sorted(set(Spy.calls)) == sorted(allowed)


def test_deleting_binaries_needs_allow_delete(storage):
    put_file(storage, "a.jpg")
    put_file(storage, ".dataloop/thumbnails/1.jpg")
    guard = open_local(storage)  # delete permission, allow_delete off
    with pytest.raises(PermissionDenied, match="allow_delete"):
        guard.delete("a.jpg")
    assert (storage / "a.jpg").exists()
    guard.delete(".dataloop/thumbnails/1.jpg")  # syncd's own artifacts: allowed
    assert not (storage / ".dataloop/thumbnails/1.jpg").exists()
