"""Issue 11: imports stay inside their folder and never replace what they were not asked to."""

from __future__ import annotations

import base64
import csv

from conftest import put_file
from syncd.imports.csv_import import import_csv


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["name", "image_bytes", "URL", "action"])
        writer.writerows(rows)
    return path


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_csv_rows_cannot_leave_their_folder(app, storage, tmp_path):
    put_file(storage, "cats/keep.txt", "precious")
    app.sync("photos")
    source = write_csv(tmp_path / "batch.csv", [
        ["/cats/keep.txt", b64(b"evil"), "", "upload"],
        ["../cats/keep.txt", b64(b"evil"), "", "upload"],
        ["/cats/keep", "", "https://example.com/a.jpg", "link"],
        ["fine.txt", b64(b"fine"), "", "upload"],
    ])
    result = import_csv(app, "photos", source, folder="/imports")
    assert (result.created, result.failed) == (1, 3)
    assert (storage / "cats" / "keep.txt").read_bytes() == b"precious"
    assert not (storage / "cats" / "keep_link.json").exists()
    assert (storage / "imports" / "batch" / "fine.txt").read_bytes() == b"fine"
    failures = list(csv.reader(open(result.failures, encoding="utf-8")))
    assert all("not a relative path inside the import folder /imports/batch" in row[-1]
               for row in failures[1:])


def test_csv_import_replaces_other_content_only_when_asked(app, storage, tmp_path):
    put_file(storage, "batch/a.txt", "original")
    app.sync("photos")
    source = write_csv(tmp_path / "batch.csv", [["a.txt", b64(b"new content"), "", "upload"],
                                                ["b.txt", b64(b"b"), "", "upload"]])
    result = import_csv(app, "photos", source)
    assert (result.created, result.updated, result.failed) == (1, 0, 1)
    assert (storage / "batch" / "a.txt").read_bytes() == b"original"
    assert "already exists with other content" in open(result.failures, encoding="utf-8").read()
    # Uncatalogued files are protected too.
    put_file(storage, "batch/c.txt", "not synced yet")
    again = import_csv(app, "photos", write_csv(tmp_path / "batch.csv",
                                                [["c.txt", b64(b"other"), "", "upload"]]))
    assert again.failed == 1 and (storage / "batch" / "c.txt").read_bytes() == b"not synced yet"
    # Same content again is unchanged, not a failure; --overwrite replaces.
    same = import_csv(app, "photos", write_csv(tmp_path / "batch.csv",
                                               [["b.txt", b64(b"b"), "", "upload"]]))
    assert (same.unchanged, same.failed) == (1, 0)
    forced = import_csv(app, "photos", write_csv(tmp_path / "batch.csv",
                                                 [["a.txt", b64(b"new content"), "", "upload"]]),
                        overwrite=True)
    assert (forced.updated, forced.failed) == (1, 0)
    assert (storage / "batch" / "a.txt").read_bytes() == b"new content"


def test_cli_overwrite_flag(run, storage, tmp_path):
    put_file(storage, "batch/a.txt", "original")
    source = write_csv(tmp_path / "batch.csv", [["a.txt", b64(b"replacement"), "", "upload"]])
    run("import", "csv", str(source), "--dataset", "photos", expect=None)
    assert (storage / "batch" / "a.txt").read_bytes() == b"original"
    run("import", "csv", str(source), "--dataset", "photos", "--overwrite")
    assert (storage / "batch" / "a.txt").read_bytes() == b"replacement"


def test_upload_does_not_follow_symlinks_and_says_what_it_skipped(app, run, storage, tmp_path):
    import json
    import os

    from syncd.imports.upload import upload_folder

    secrets = tmp_path / "home" / ".aws"
    secrets.mkdir(parents=True)
    (secrets / "credentials").write_text("aws_secret_access_key = SECRET")
    source = tmp_path / "upload"
    put_file(source, "photos/a.jpg", "a")
    os.symlink(secrets / "credentials", source / "photos" / "planted.jpg")
    os.symlink(secrets, source / "linked-folder")
    result = upload_folder(app, "photos", source)
    assert (result.created, result.failed) == (1, 0)
    assert sorted(result.skipped_links) == ["linked-folder", "photos/planted.jpg"]
    stored = [p for p in storage.rglob("*") if p.is_file()]
    assert [p.relative_to(storage).as_posix() for p in stored] == ["photos/a.jpg"]
    assert all(b"SECRET" not in p.read_bytes() for p in stored)
    line = run.json_lines("upload", str(source), "--dataset", "photos")[0]
    assert line["skipped_links"] == 2
    text = run("upload", str(source), "--dataset", "photos")
    assert "2 symbolic links not followed" in text.stderr and "photos/planted.jpg" in text.stderr


def test_upload_retry_list_naming_a_symlink_fails_that_file(app, storage, tmp_path):
    import os

    from syncd.imports.upload import upload_folder

    source = tmp_path / "upload"
    put_file(source, "ok.txt", "ok")
    (tmp_path / "outside.txt").write_text("SECRET")
    os.symlink(tmp_path / "outside.txt", source / "link.txt")
    retry = tmp_path / "retry.csv"
    retry.write_text("path,error\nlink.txt,x\nok.txt,x\n")
    result = upload_folder(app, "photos", source, retry=retry)
    assert (result.created, result.failed) == (1, 1)
    assert "a symbolic link, not followed" in open(result.failures, encoding="utf-8").read()
    assert not (storage / "link.txt").exists()


def test_jsonl_and_tar_imports_replace_other_content_only_when_asked(app, storage, tmp_path):
    import io
    import json
    import tarfile

    from syncd.imports.archive import import_tar
    from syncd.imports.jsonl import import_jsonl

    put_file(storage, "refs/a.txt", "original")
    put_file(storage, "shoot/b.txt", "original")
    (tmp_path / "a.txt").write_text("replacement")
    source = tmp_path / "refs.jsonl"
    source.write_text(json.dumps({"path": "a.txt", "name": "a.txt"}) + "\n")
    archive = tmp_path / "shoot.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("b.txt")
        info.size = len(b"replacement")
        tar.addfile(info, io.BytesIO(b"replacement"))
    assert import_jsonl(app, "photos", source).failed == 1
    assert import_tar(app, "photos", archive).failed == 1
    assert (storage / "refs" / "a.txt").read_text() == (storage / "shoot" / "b.txt").read_text() == "original"
    assert import_jsonl(app, "photos", source, overwrite=True).failed == 0
    assert import_tar(app, "photos", archive, overwrite=True).failed == 0
    assert (storage / "refs" / "a.txt").read_text() == (storage / "shoot" / "b.txt").read_text() == "replacement"
