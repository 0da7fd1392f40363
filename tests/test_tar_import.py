"""`syncd import tar`: an archive expanded into items as a stream; bad members fail alone."""

from __future__ import annotations

import pytest

import io
import tarfile

from conftest import put_file
from syncd.imports.archive import import_tar
from test_csv_import import PNG, read_csv

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL


def add(archive: tarfile.TarFile, name: str, data: bytes = b"", kind=tarfile.REGTYPE, link: str = ""):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, len(data), link
    archive.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def items_by_path(app):
    return {i["filename"]: i for i in app.catalogue.iter_items(app.dataset("photos"))}


def test_members_become_items_and_bad_members_fail_alone_then_retry(run, app, storage, tmp_path):
    big = PNG * 40_000  # ~2.3 MB: spooled to disk, not held in memory
    source = tmp_path / "shoot 2.tar.gz"
    with tarfile.open(source, "w:gz") as archive:
        add(archive, "cats/", kind=tarfile.DIRTYPE)
        add(archive, "cats/a.png", PNG)
        add(archive, "./cats/big.png", big)
        add(archive, "notes.tmp", b"x")
        add(archive, "../escape.png", PNG)
        add(archive, "cats/link.png", kind=tarfile.SYMTYPE, link="a.png")
        add(archive, ".dataloop/x.png", PNG)  # a .dataloop/ at any depth is never an item (issue 11)
    [line] = run.json_lines("import", "tar", str(source), "--dataset", "photos", expect=5)
    assert (line["folder"], line["total"], line["created"], line["excluded"], line["failed"]) == (
        "/shoot 2", 6, 2, 1, 3)
    assert sorted(items_by_path(app)) == ["/shoot 2/cats/a.png", "/shoot 2/cats/big.png"]
    assert (storage / "shoot 2/cats/big.png").read_bytes() == big
    rows = read_csv(tmp_path / "shoot 2.failures.csv")
    assert rows[0] == ["member", "error"]
    assert [r[1] for r in rows[1:]] == [
        "shoot 2.tar.gz: ../escape.png: the path leaves the archive's folder",
        "shoot 2.tar.gz: cats/link.png: a symbolic link; only files are imported",
        "shoot 2.tar.gz: .dataloop/x.png: InvalidKey: '/shoot 2/.dataloop/x.png' is inside the"
        " hidden artifacts folder",
    ]
    # Retrying imports only the listed members; re-running the whole archive duplicates nothing.
    [again] = run.json_lines("import", "tar", str(source), "--dataset", "photos",
                             "--retry", str(tmp_path / "shoot 2.failures.csv"), expect=5)
    assert (again["total"], again["created"], again["failed"]) == (3, 0, 3)
    [whole] = run.json_lines("import", "tar", str(source), "--dataset", "photos", expect=5)
    assert (whole["created"], whole["unchanged"]) == (0, 2)


def test_a_file_that_is_not_an_archive_is_one_error(run, tmp_path):
    bad = put_file(tmp_path, "x.tar", b"not a tar at all" * 100)
    result = run("import", "tar", str(bad), "--dataset", "photos", expect=2)
    assert "x.tar: not a readable tar archive" in result.stderr
