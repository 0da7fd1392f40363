"""Sampling and quotas for files that arrive on their own (a sync or rescan, the daemon's
events): decided once per path, remembered in the catalogue, reported, never deleting
anything from storage (syncd.sync.admission, syncd.catalogue.arrivals)."""

from __future__ import annotations

import pytest

import os

from conftest import Runner, local_config, put_file
from daemon_support import ThreadDaemon, items, wait_for
from syncd.app import App
from syncd.service.metrics import Metrics
from syncd.catalogue.arrivals import refusals
from syncd.sync.admission import Admission
from unprivileged import as_nobody, give_to_nobody, nobody_tree  # noqa: F401 (a fixture)

pytestmark = pytest.mark.both_backends  # the tests given catalogue_location: on both engines


def controls_config(tmp_path, storage, upload: str, *, name: str = "syncd.toml", extra: str = "",
                    catalogue=None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    return local_config(tmp_path, storage, name=name, catalogue=catalogue,
                        extra=f"[datasets.upload]\n{upload}\n{extra}")


def present(config) -> list[str]:
    with App.from_file(config) as app:
        return sorted(i["filename"] for i in app.catalogue.iter_items(app.dataset("photos")))


def refused_rows(run) -> dict[str, str]:
    return {row["filename"]: row["reason"] for row in run.json_lines("items", "refused", "photos")}


def test_sync_samples_arrivals_by_path_remembers_and_reports(tmp_path, storage, catalogue_location,
                                                             request):
    names = [f"/shoot/{index:02d}.bin" for index in range(40)]
    for name in names:
        put_file(storage, name.lstrip("/"), f"file {name}")
    config = controls_config(tmp_path, storage, "sample_percent = 50\nsample_seed = 7",
                             catalogue=catalogue_location)
    run = Runner(config)
    [line] = run.json_lines("sync", "--no-preprocess")
    kept = sorted(n for n in names if not Admission(50.0, 7).sampled_out(n))
    left_out = sorted(set(names) - set(kept))
    assert 5 < len(kept) < 35
    assert (line["created"], line["refused"], line["still_refused"]) == (
        len(kept), {"sampled-out": len(left_out)}, 0)
    samples = line["samples"]["refused"]  # the first refused, in listing order
    assert len(samples) == min(20, len(left_out)) and set(samples) <= set(left_out)
    assert present(config) == kept  # the same paths any host with this seed keeps
    assert len(list((storage / "shoot").iterdir())) == 40  # nothing deleted from storage
    assert refused_rows(run) == dict.fromkeys(left_out, "sampled-out")

    # Another catalogue (another host) with the same seed decides the same.
    elsewhere = (request.getfixturevalue("postgres_server").create_database()
                 if catalogue_location.startswith("postgresql://") else None)
    other = controls_config(tmp_path / "other", storage, "sample_percent = 50\nsample_seed = 7",
                            catalogue=elsewhere)
    Runner(other)("sync", "--no-preprocess")
    assert present(other) == kept

    # A rescan leaves the refused paths alone: nothing is decided again, nothing is new.
    [line] = run.json_lines("sync", "--no-preprocess")
    assert (line["created"], line["refused"], line["still_refused"]) == (0, {}, len(left_out))
    assert line["unchanged"] == len(kept)
    [status] = [r for r in run.json_lines("status") if r.get("dataset") == "photos"]
    assert status["refused"] == {"sampled-out": len(left_out)}
    assert f", still refused {len(left_out)} (" in run("sync", "--no-preprocess").stdout

    # A refused file that leaves storage loses its refusal; one whose content changes is
    # decided again (the same path and seed: still sampled out).
    gone, changed = left_out[0], left_out[1]
    (storage / gone.lstrip("/")).unlink()
    put_file(storage, changed.lstrip("/"), "new content, longer than before")
    [line] = run.json_lines("sync", "--no-preprocess")
    assert (line["created"], line["refused"], line["still_refused"]) == (
        0, {"sampled-out": 1}, len(left_out) - 2)
    rows = refused_rows(run)
    assert gone not in rows and rows[changed] == "sampled-out" and len(rows) == len(left_out) - 1

    # Admitted by name, then all the rest (a dry run first changes nothing).
    result = run("items", "admit", "photos", changed)
    assert f"admitted {changed}" in result.stdout
    [dry] = run.json_lines("items", "admit", "photos", "--all", "--dry-run")
    assert (dry["admitted"], dry["dry_run"]) == (len(left_out) - 2, True)
    assert len(refused_rows(run)) == len(left_out) - 2
    [done] = run.json_lines("items", "admit", "photos", "--all")
    assert (done["admitted"], done["gone"]) == (len(left_out) - 2, 0)
    assert present(config) == sorted(set(names) - {gone})
    assert refused_rows(run) == {}
    [line] = run.json_lines("sync", "--no-preprocess")
    assert (line["created"], line["still_refused"], line["unchanged"]) == (0, 0, 39)
    # Admitted items are new items like any other: their preprocessing jobs are queued.
    with App.from_file(config) as app:
        assert len([j for j in app.jobs().rows() if j["filename"] == changed]) == 1
    unknown = run("items", "admit", "photos", "/shoot/nope.bin", expect=3)
    assert "'/shoot/nope.bin' is not a refused file of dataset 'photos'" in unknown.stderr


def test_arrival_quotas_count_the_catalogue_and_hold_across_runs(tmp_path, storage,
                                                                catalogue_location):
    for index in range(5):
        put_file(storage, f"{index}.bin", f"file {index}")
    config = controls_config(tmp_path, storage, "quota_per_hour = 3\nsample_seed = 1",
                             catalogue=catalogue_location)
    run = Runner(config)
    first = run("sync", "--no-preprocess").stdout
    assert "created 3," in first and ", refused 2 (quota-hour)" in first
    assert present(config) == ["/0.bin", "/1.bin", "/2.bin"]  # in filename order
    assert refused_rows(run) == {"/3.bin": "quota-hour", "/4.bin": "quota-hour"}

    # The window is counted from the catalogue: a new process, a new file, still full; an
    # upload counts against the same quota.
    put_file(storage, "5.bin", "file 5")
    [line] = run.json_lines("sync", "--no-preprocess")
    assert (line["created"], line["refused"], line["still_refused"]) == (0, {"quota-hour": 1}, 2)
    put_file(tmp_path / "shoot", "u.bin", "uploaded")
    [upload] = run.json_lines("upload", str(tmp_path / "shoot"), "--dataset", "photos",
                              "--folder", "/up", expect=5)
    assert (upload["created"], upload["refused"]) == (0, 1)

    # A larger quota does not undo a decision by itself: the paths stay refused until their
    # content changes (then decided again, with room now) or they are admitted.
    config.write_text(config.read_text().replace("quota_per_hour = 3", "quota_per_hour = 5"))
    put_file(storage, "3.bin", "file 3, changed")
    [line] = run.json_lines("sync", "--no-preprocess")
    assert (line["created"], line["refused"], line["still_refused"]) == (1, {}, 2)
    assert "/3.bin" in present(config)
    [done] = run.json_lines("items", "admit", "photos", "--all", "--reason", "quota-hour")
    assert done["admitted"] == 2
    assert present(config) == [f"/{i}.bin" for i in range(6)]
    assert Runner(config).json_lines("items", "refused", "photos") == []


def test_arrivals_off_keeps_every_file(tmp_path, storage):
    put_file(storage, "a.bin", "a")
    config = controls_config(tmp_path, storage, "sample_percent = 1\nquota_per_day = 0\narrivals = false")
    [line] = Runner(config).json_lines("sync", "--no-preprocess")
    assert (line["created"], line["refused"]) == (1, {})


def test_the_daemon_decides_events_once_and_a_rescan_agrees(tmp_path, storage):
    """Files dropped into a watched folder are sampled by path (the sync's choice), refused
    files stay in storage and are listed, counted in /metrics; a rescan decides nothing
    again; a refused file deleted from storage loses its refusal."""
    config = controls_config(tmp_path, storage, 'sample_percent = 50\nsample_seed = 11\ntags = ["drop"]',
                             name="daemon.toml", extra="""
[daemon]
debounce_seconds = 0.05

[[sources]]
kind = "watch"
driver = "disk"
""")
    names = [f"/in/{index:02d}.txt" for index in range(24)]
    kept = sorted(n for n in names if not Admission(50.0, 11).sampled_out(n))
    left_out = sorted(set(names) - set(kept))
    db = tmp_path / "catalogue.db"
    run = Runner(config)

    def decided():
        rows = refused_rows(run)
        return set(items(db)) | set(rows) == set(names) and rows

    with ThreadDaemon(config) as daemon:
        for name in names:
            put_file(storage, name.lstrip("/"), name)
        rows = wait_for(decided, what="every dropped file decided")
        assert sorted(items(db)) == kept and sorted(rows) == left_out
        assert all(item["metadata"]["user"] == {"tags": ["drop"]} for item in items(db).values())
        scrape = Metrics(db).exposition().decode()
        assert f'syncd_refused_files{{dataset="photos",reason="sampled-out"}} {len(left_out)}.0' in scrape
        assert 'action="refused"' in daemon.metrics.exposition().decode()

        os.unlink(storage / left_out[0].lstrip("/"))
        wait_for(lambda: left_out[0] not in refused_rows(run), what="the refusal of a deleted file forgotten")

    [line] = run.json_lines("sync", "--no-preprocess")
    assert (line["created"], line["refused"], line["still_refused"]) == (0, {}, len(left_out) - 1)
    assert sorted(items(db)) == kept


def test_events_past_a_quota_are_refused_once_and_decided_again_on_new_content(tmp_path, storage):
    """The event applier counts the quota's window in the catalogue, inside its batch; an
    event repeated for a refused file with the same content decides nothing again; a dry-run
    sync reports refusals and writes none."""
    import time

    from syncd.catalogue import arrivals
    from syncd.sync.applier import Applier
    from syncd.sync.events import ObjectCreated

    config = controls_config(tmp_path, storage, "quota_per_minute = 2")
    for name in ("a", "b", "c", "d"):
        put_file(storage, f"{name}.bin", name)
    [dry] = Runner(config).json_lines("sync", "--dry-run")
    assert (dry["created"], dry["refused"]) == (2, {"quota-minute": 2})
    with App.from_file(config) as app:
        ds = app.dataset("photos")
        assert list(arrivals.refusals(app.catalogue, ds)) == []  # the dry run wrote nothing
        applier = Applier(app.catalogue, lambda n: (app.dataset(n), app.dataset_driver(n)),
                          path_filter=app.path_filter, admission=app.admission)

        def events(*names):
            return applier.apply([ObjectCreated(dataset="photos", key=f"{n}.bin", source="test",
                                                received=time.time()) for n in names])

        try:
            changes = events("a", "b", "c", "d")
            assert [(c.action, c.reason) for c in changes] == [
                ("created", None), ("created", None), ("refused", "quota-minute"),
                ("refused", "quota-minute")]
            decided = arrivals.find(app.catalogue, ds, "/c.bin")["decided_at"]
            [again] = events("c")
            assert (again.action, again.reason) == ("refused", "quota-minute")
            assert arrivals.find(app.catalogue, ds, "/c.bin")["decided_at"] == decided
            put_file(storage, "c.bin", "c, rewritten")  # new content: decided again (still full)
            [again] = events("c")
            assert arrivals.find(app.catalogue, ds, "/c.bin")["size"] == len("c, rewritten")
            assert again.action == "refused"
        finally:
            applier.close()
        assert sorted(i["filename"] for i in app.catalogue.iter_items(ds)) == ["/a.bin", "/b.bin"]


def test_a_file_syncd_writes_is_never_left_refused(tmp_path, storage):
    """syncd's own write (an upload, an import, an archive member) may be seen by the daemon
    as an arrival before the writer catalogues it, and refused; the writer's item wins and
    the refusal goes."""
    import time

    from syncd.catalogue import arrivals
    from syncd.imports.writes import Content, ItemFacts, put_item
    from syncd.sync.applier import Applier
    from syncd.sync.events import ObjectCreated

    config = controls_config(tmp_path, storage, "sample_percent = 0.001")
    put_file(storage, "up/a.bin", "uploaded")  # the writer's bytes, already in storage
    with App.from_file(config) as app:
        ds = app.dataset("photos")
        applier = Applier(app.catalogue, lambda n: (app.dataset(n), app.dataset_driver(n)),
                          path_filter=app.path_filter, admission=app.admission)
        try:
            [seen] = applier.apply([ObjectCreated(dataset="photos", key="up/a.bin", source="watch",
                                                  received=time.time())])
        finally:
            applier.close()
        assert (seen.action, seen.reason) == ("refused", "sampled-out")
        status, _ = put_item(app.catalogue, ds, app.dataset_driver("photos"), "/up/a.bin",
                             Content.of_bytes(b"uploaded"), ItemFacts())
        assert status == "created"
        assert arrivals.find(app.catalogue, ds, "/up/a.bin") is None
    assert present(config) == ["/up/a.bin"]


def test_refusals_under_a_folder_that_cannot_be_read_are_kept(nobody_tree):
    """As items are: a listing error under /b is no evidence its files left, so their
    refusals stay; readable again, they are still refused, not decided anew."""
    storage = nobody_tree / "store"
    for key in ["a.bin", "b/x.bin", "b/y.bin"]:
        put_file(storage, key, key)
    config = controls_config(nobody_tree, storage, "quota_per_hour = 1")
    give_to_nobody(nobody_tree)

    def sync() -> tuple[dict, dict]:
        with App.from_file(config) as app:
            result = app.sync("photos")
            dataset = app.dataset("photos")
            refused = {row["filename"]: row["reason"] for row in refusals(app.catalogue, dataset)}
            return result.as_json(), refused

    first, refused = as_nobody(sync)
    assert first["created"] == 1 and refused == {"/b/x.bin": "quota-hour", "/b/y.bin": "quota-hour"}
    os.chmod(storage / "b", 0)
    second, refused = as_nobody(sync)
    assert second["errors"] == 1 and refused == {"/b/x.bin": "quota-hour", "/b/y.bin": "quota-hour"}
    os.chmod(storage / "b", 0o755)
    third, refused = as_nobody(sync)
    assert (third["created"], third["refused"], third["still_refused"]) == (0, {}, 2)
    assert refused == {"/b/x.bin": "quota-hour", "/b/y.bin": "quota-hour"}
