"""kill -9 at any point, then a restart: nothing lost, every item preprocessed exactly once.
On both catalogue engines."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from catalogue_reads import query
from conftest import put_file
from daemon_support import DaemonProcess, daemon_config, items, jpeg, thumbnail_of, wait_for
from syncd.catalogue import Catalogue
from syncd.catalogue.jobs import JobQueue

pytestmark = pytest.mark.both_backends


def files_on_disk(storage):
    found = set()
    for folder, dirs, names in os.walk(storage):
        dirs[:] = [d for d in dirs if d != ".dataloop"]
        for name in names:
            found.add("/" + os.path.relpath(os.path.join(folder, name), storage))
    return found


def write_batch(storage, batch, count=40):
    for i in range(count):
        put_file(storage, f"b{batch}/{i % 4}/f{i}.jpg", jpeg(batch * 100 + i))


def open_jobs(db) -> int:
    with Catalogue(db) as catalogue:
        return JobQueue(catalogue).open_count()


def converged(db, storage) -> bool:
    present = {k for k, v in items(db).items() if v["state"] == "present"}
    return present == files_on_disk(storage) and open_jobs(db) == 0


def assert_exactly_once(db, storage):
    present = {k: v for k, v in items(db).items() if v["state"] == "present"}
    assert set(present) == files_on_disk(storage)
    duplicates = query(db, "SELECT filename, count(*) FROM items GROUP BY dataset_id, filename"
                           " HAVING count(*) > 1")
    assert duplicates == []
    runs = query(db, """SELECT i.filename, count(j.id) FILTER (WHERE j.state = 'done'),
                               count(j.id) FILTER (WHERE j.state != 'done')
                        FROM items i LEFT JOIN jobs j ON j.item_pk = i.pk AND j.kind = 'preprocess'
                                                      AND j.state != 'cancelled'
                        WHERE i.state = 'present' GROUP BY i.pk, i.filename""")
    # Each item preprocessed exactly once: one done job, nothing queued twice or lost.
    assert {name: (done, other) for name, done, other in runs if (done, other) != (1, 0)} == {}
    for item in present.values():
        assert (storage / thumbnail_of(item)).exists()


def test_kill_9_mid_burst_then_restart(tmp_path, storage, catalogue_location):
    db = catalogue_location
    cfg = daemon_config(tmp_path, storage, daemon="debounce_seconds = 0.05", catalogue=db)
    log = tmp_path / "daemon.log"
    write_batch(storage, 0)  # there before the first start: the initial sync
    daemon = DaemonProcess(cfg, log).start()
    try:
        wait_for(lambda: len(items(db)) >= 40, what="initial sync")
        writer = threading.Thread(target=write_batch, args=(storage, 1))
        writer.start()
        wait_for(lambda: any(k.startswith("/b1/") for k in items(db)), what="some of batch 1")
        daemon.kill()  # SIGKILL mid-burst: some of batch 1 catalogued, some not
        writer.join()
        # While it is down: more files, a delete, a rename.
        write_batch(storage, 2)
        (storage / "b0/0/f0.jpg").unlink()
        os.rename(storage / "b0/1/f1.jpg", storage / "b2/renamed.jpg")
        daemon = DaemonProcess(cfg, log).start()
        wait_for(lambda: converged(db, storage), timeout=60, what="catalogue matches the folder again")
        # Killed while preprocessing: some of batch 3's jobs done, others in flight or queued.
        write_batch(storage, 3)
        wait_for(lambda: any(thumbnail_of(v) for k, v in items(db).items() if k.startswith("/b3/")),
                 what="some of batch 3 preprocessed")
        daemon.kill()
        # Killed again right after a start, during the catch-up rescan.
        write_batch(storage, 4)
        daemon = DaemonProcess(cfg, log).start()
        daemon.kill()
        daemon = DaemonProcess(cfg, log).start()
        wait_for(lambda: converged(db, storage), timeout=60, what="converged after the kills")
        assert daemon.terminate(signal.SIGTERM) == 0
    finally:
        daemon.close()
    assert_exactly_once(db, storage)
    assert items(db)["/b0/0/f0.jpg"]["state"] == "missing"
