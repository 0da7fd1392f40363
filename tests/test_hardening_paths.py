"""Issue 11, paths and files: symlink races, temp files, nested datasets, modes, odd names."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import local_config, put_file
from daemon_support import ROOT, jpeg, wait_for
from drivers import InvalidKey, NotFound
from drivers.local import LocalDriver, LocalOptions
from syncd.app import App

SWAPS = 20_000  # the swapper's bound; it stops earlier when the reads are done
READS = 3_000


def local(root: Path) -> LocalDriver:
    return LocalDriver(LocalOptions(name="disk", root=root))


def swapper(stop: threading.Event, target: Path, as_link_to: Path, as_real) -> threading.Thread:
    """Swap `target` between a real entry (made by `as_real(path)`) and a symlink to
    `as_link_to`, atomically each time (rename over it), until `stop` or SWAPS swaps."""
    def run() -> None:
        link, real = target.with_name(".link-swap"), target.with_name(".real-swap")
        for _ in range(SWAPS):
            if stop.is_set():
                return
            os.symlink(as_link_to, link)
            os.replace(link, target)
            as_real(real)
            os.replace(real, target)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_reads_and_stats_never_follow_a_file_swapped_for_an_outside_symlink(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"SECRET" * 10)
    driver = local(root)
    stop = threading.Event()
    thread = swapper(stop, root / "a.txt", secret, lambda p: p.write_bytes(b"inside"))
    leaked = refused = 0
    try:
        for _ in range(READS):
            try:
                data = driver.read("a.txt")
                size = driver.stat("a.txt").size
            except (InvalidKey, NotFound):
                refused += 1
                continue
            leaked += data.startswith(b"SECRET") or size == 60
    finally:
        stop.set()
        thread.join(10)
    assert leaked == 0
    assert refused > 0  # the race was really run: some reads met the link


def test_reads_and_writes_never_pass_through_a_folder_swapped_for_an_outside_symlink(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.txt").write_bytes(b"SECRET")

    put_file(root, "d/a.txt", "inside")
    target, parked, link = root / "d", root / ".parked", root / ".link"

    def restore() -> None:
        """Put the real folder back, whatever a put made meanwhile."""
        if link.is_symlink():
            link.unlink()
        if target.is_symlink():
            target.unlink()
        elif target.is_dir() and parked.exists():
            shutil.rmtree(target, ignore_errors=True)
        if parked.exists():
            os.rename(parked, target)

    def swap_folder() -> None:  # a folder cannot be renamed over: park it, link, unpark
        for _ in range(SWAPS):
            if stop.is_set():
                break
            try:
                os.symlink(outside, link)
                os.rename(target, parked)
                os.rename(link, target)
                os.rename(target, link)
                restore()
            except OSError:  # a put made `d` while it was gone: start again
                for _ in range(100):
                    try:
                        restore()
                        break
                    except OSError:
                        continue

    driver = local(root)
    stop = threading.Event()
    thread = threading.Thread(target=swap_folder, daemon=True)
    thread.start()
    leaked = refused = 0
    try:
        for index in range(READS // 3):
            try:
                leaked += driver.read("d/a.txt") == b"SECRET"
            except (InvalidKey, NotFound):
                refused += 1
            try:
                driver.put(f"d/new{index}.txt", b"written")
            except (InvalidKey, NotFound, OSError):
                pass
    finally:
        stop.set()
        thread.join(10)
    assert leaked == 0 and refused > 0
    assert sorted(p.name for p in outside.iterdir()) == ["a.txt"]


def test_symlinks_inside_the_root_still_read_as_their_target(tmp_path):
    root = tmp_path / "root"
    put_file(root, "real/a.txt", "data")
    os.symlink("real/a.txt", root / "rel-link.txt")
    os.symlink(root / "real" / "a.txt", root / "abs-link.txt")
    os.symlink("real", root / "folder-link")
    os.symlink("../../outside.txt", root / "real" / "escape.txt")
    driver = local(root)
    assert driver.read("rel-link.txt") == driver.read("abs-link.txt") == b"data"
    assert driver.read("folder-link/a.txt") == b"data"
    with pytest.raises(InvalidKey):
        driver.read("real/escape.txt")


# -- 10. temporary files ----------------------------------------------------------------------

KILLED_PUT = """
import sys, time
from drivers.local import LocalDriver, LocalOptions

class Endless:
    def read(self, size=-1):
        if not getattr(self, "sent", False):
            self.sent = True
            return b"x" * 65536
        print("writing", flush=True)
        time.sleep(60)
        return b""

LocalDriver(LocalOptions(name="d", root=sys.argv[1])).put("cats/big.bin", Endless())
"""


@pytest.mark.parametrize("lister", ["find", "scandir"])
def test_a_killed_put_leaves_no_item_and_its_temp_file_is_cleaned_up(app, storage, monkeypatch, lister):
    from drivers import local as local_module

    monkeypatch.setattr(local_module, "_gnu_find_cache", [lister == "find"])
    put_file(storage, "cats/keep.jpg", "k")
    process = subprocess.Popen([sys.executable, "-c", KILLED_PUT, str(storage)], cwd=ROOT,
                               stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert process.stdout.readline() == b"writing\n"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        process.stdout.close()
    [left] = [p for p in (storage / "cats").iterdir() if p.name.startswith(".syncd-")]
    result = app.sync("photos")
    assert (result.created, result.errors) == (1, 0)
    assert [i["filename"] for i in app.catalogue.iter_items(app.dataset("photos"))] == ["/cats/keep.jpg"]
    assert left.exists()  # young: it could be a put still writing
    old = time.time() - 2 * 3600
    os.utime(left, (old, old))
    app.sync("photos", dry_run=True)
    assert left.exists()  # a dry run deletes nothing
    app.sync("photos")
    assert not left.exists()


# -- 11, 13. nested datasets, a file named .dataloop, backslashes -------------------------------

def test_a_nested_datasets_artifacts_are_not_items_of_the_outer_one(tmp_path, storage):
    config = local_config(tmp_path, storage, extra=f"""
        [[drivers]]
        name = "inner-disk"
        kind = "local"
        root = "{storage}"
        path = "sub"

        [[datasets]]
        name = "inner"
        driver = "inner-disk"
        """)
    put_file(storage, "sub/a.jpg", jpeg(1))
    with App.from_file(config) as app:
        app.sync("inner")
        assert app.run_jobs(["inner"], workers=0).done == 1
        assert list((storage / "sub" / ".dataloop" / "thumbnails").iterdir())
        result = app.sync("photos")
        assert result.created == 1
        assert [i["filename"] for i in app.catalogue.iter_items(app.dataset("photos"))] == ["/sub/a.jpg"]


@pytest.mark.parametrize("lister", ["find", "scandir"])
def test_a_file_named_dataloop_gives_clear_errors_and_spares_the_rest(app, storage, monkeypatch, lister):
    from drivers import local as local_module

    monkeypatch.setattr(local_module, "_gnu_find_cache", [lister == "find"])
    put_file(storage, ".dataloop", "not a folder")
    put_file(storage, "a.jpg", jpeg(2))
    put_file(storage, "back\\slash.jpg", jpeg(3))
    result = app.sync("photos")
    assert (result.created, result.errors) == (1, 1)
    [error] = app.catalogue.listing_errors(app.dataset("photos"))
    assert error["path"] == "/back\\slash.jpg" and "'\\'" in error["reason"]
    run = app.run_jobs(workers=0)
    assert (run.done, run.failed) == (0, 1)
    item = app.catalogue.get_item(app.dataset("photos"), "/a.jpg")
    assert item["metadata"]["system"]["width"] == 64  # the metadata is recorded all the same
    [reason] = [job["error"] for job in app.jobs().rows()]
    assert "cannot write the thumbnail" in reason and "a file and a folder would have the same name" in reason
    assert "NotADirectoryError" not in reason


# -- 12. modes ----------------------------------------------------------------------------------

def test_written_files_follow_the_umask_and_overwrites_keep_their_mode(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    driver = local(root)
    previous = os.umask(0o027)
    try:
        driver.put("new.txt", b"one")
        assert stat.S_IMODE(os.stat(root / "new.txt").st_mode) == 0o640
        put_file(root, "shared.txt", "old")
        os.chmod(root / "shared.txt", 0o664)
        driver.put("shared.txt", b"new")
        assert stat.S_IMODE(os.stat(root / "shared.txt").st_mode) == 0o664
        driver.put("deep/er/file.txt", b"x")
        assert stat.S_IMODE(os.stat(root / "deep" / "er").st_mode) == 0o750
    finally:
        os.umask(previous)


def test_failures_files_follow_the_umask(app, tmp_path):
    from syncd.imports.csv_import import import_csv

    source = tmp_path / "rows.csv"
    source.write_text("name,image_bytes\nbad.txt,%%%\n")
    previous = os.umask(0o022)
    try:
        result = import_csv(app, "photos", source)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(result.failures).st_mode) == 0o644


def test_a_backslash_name_does_not_stop_deletes_elsewhere(app, storage):
    put_file(storage, "a.jpg", "a")
    put_file(storage, "b.jpg", "b")
    put_file(storage, "odd\\name.jpg", "odd")
    app.sync("photos")
    (storage / "b.jpg").unlink()
    result = app.sync("photos")
    assert (result.deleted, result.errors) == (1, 1)
