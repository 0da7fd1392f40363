"""The CLI: JSON Lines on stdout and nothing else, one-line errors, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from syncd.cli import cli

from conftest import put_file, write_config

REPO = Path(__file__).resolve().parent.parent
SYNC_KEYS = {"dataset", "listed", "created", "updated", "moved", "deleted", "unchanged",
             "errors", "seconds"}


def test_sync_json_is_one_object_per_dataset(run, storage):
    put_file(storage, "a.jpg", "a")
    put_file(storage, "b/c.jpg", "c")
    [line] = run.json_lines("sync")
    assert SYNC_KEYS <= set(line)
    assert (line["dataset"], line["listed"], line["created"]) == ("photos", 2, 2)
    [again] = run.json_lines("sync", "photos")
    assert again["unchanged"] == 2 and again["created"] == 0


def test_sync_human_output_and_dry_run(run, storage):
    put_file(storage, "a.jpg")
    result = run("sync", "--dry-run")
    assert "(dry run) photos: listed 1, created 1" in result.stdout
    assert "would be created: /a.jpg" in result.stdout
    assert run.json_lines("items", "list", "photos") == []


def test_items_list_and_get(run, storage):
    put_file(storage, "cats/a b.jpg", "12345")
    put_file(storage, "z.png", "1")
    run("sync")
    items = run.json_lines("items", "list", "photos")
    assert [i["filename"] for i in items] == ["/cats/a b.jpg", "/z.png"]
    item = items[0]
    assert {"id", "dataset", "filename", "name", "dir", "type", "createdAt", "updatedAt",
            "metadata"} <= set(item)
    assert item["metadata"]["system"]["size"] == 5
    [got] = run.json_lines("items", "get", "photos", "/cats/a b.jpg")
    assert got == item
    [got] = run.json_lines("items", "get", "photos", "cats/a b.jpg")  # leading slash optional
    assert got["id"] == item["id"]
    human = run("items", "list", "photos").stdout
    assert human.splitlines()[0].split("\t")[:2] == ["/cats/a b.jpg", "5"]


def test_items_list_can_leave_out_missing(run, storage):
    put_file(storage, "a.jpg")
    gone = put_file(storage, "b.jpg")
    run("sync")
    gone.unlink()
    run("sync")
    states = {i["filename"]: i["state"] for i in run.json_lines("items", "list", "photos")}
    assert states == {"/a.jpg": "present", "/b.jpg": "missing"}
    assert [i["filename"] for i in run.json_lines("items", "list", "photos", "--present-only")] == ["/a.jpg"]


def test_unknown_item_and_dataset(run, storage):
    run("sync")
    result = run("items", "get", "photos", "/nope.jpg", expect=3)
    assert result.stdout == ""
    assert result.stderr.strip() == "syncd: error: no item '/nope.jpg' in dataset 'photos'"
    result = run("sync", "nope", expect=3)
    assert "no dataset named 'nope' (datasets: photos)" in result.stderr


def test_unreachable_root_is_a_one_line_error(run, storage):
    shutil.rmtree(storage)
    result = run("sync", "--json", expect=4)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("syncd: error: driver 'disk'") and "does not exist" in lines[0]


def test_permission_denied_is_a_one_line_error(tmp_path, storage):
    config = write_config(tmp_path / "ro.toml", f"""
        [catalogue]
        path = "{tmp_path / 'c.db'}"
        [[drivers]]
        name = "disk"
        kind = "local"
        root = "{storage}"
        permissions = ["get"]
        [[datasets]]
        name = "photos"
        driver = "disk"
        """)
    from conftest import Runner
    result = Runner(config)("sync", expect=4)
    assert "permission denied" in result.stderr and "'list' permission" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_config_exit_code(tmp_path):
    from conftest import Runner
    bad = write_config(tmp_path / "bad.toml", "[[drivers]]\nname = 'x'\n")
    result = Runner(bad)("sync", expect=2)
    assert result.stderr.startswith(f"syncd: error: {bad}: drivers[0] ('x').kind: missing")


def test_partial_sync_exits_5_and_still_prints_json(run, storage):
    put_file(storage, "ok.jpg")
    with open(os.path.join(os.fsencode(storage), b"bad-\xff.jpg"), "wb") as file:
        file.write(b"x")
    result = run("sync", "--json", expect=5)
    [line] = [json.loads(x) for x in result.stdout.splitlines()]
    assert line["created"] == 1 and line["errors"] == 1
    assert "not valid UTF-8" in result.stderr


def test_every_command_has_help_and_is_in_the_readme():
    readme = (REPO / "README.md").read_text()

    def walk(group, prefix):
        for name, command in group.commands.items():
            path = f"{prefix} {name}"
            assert command.help, f"{path} has no help text"
            if hasattr(command, "commands"):
                yield from walk(command, path)
            else:
                yield path

    for path in walk(cli, "syncd"):
        assert path in readme, f"`{path}` is not documented in README.md"


def test_console_entry_point_and_quick_start(tmp_path):
    """The README's first command, on a copy of the repository's example."""
    # Without the thumbnails an earlier run of the quick start wrote into the repository.
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns(".dataloop"))
    shutil.copy(REPO / "config.example.toml", tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "syncd", "--config", "config.example.toml"]
    done = subprocess.run([*command, "sync", "--json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [summary] = [json.loads(line) for line in done.stdout.splitlines()]
    photos = tmp_path / "examples/photos"
    samples = sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*")
                     if p.is_file() and not p.relative_to(photos).as_posix().startswith(".dataloop/"))
    assert summary["created"] == len(samples) >= 7
    # Each new image got its thumbnail, written back into the folder under .dataloop/.
    images = [s for s in samples if s.endswith((".jpg", ".png", ".webp"))]
    assert summary["preprocessed"]["done"] == len(samples)
    assert len(list((photos / ".dataloop/thumbnails").iterdir())) == len(images)
    listed = subprocess.run([*command, "items", "list", "photos", "--json"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120)
    filenames = sorted(json.loads(line)["filename"] for line in listed.stdout.splitlines())
    assert filenames == ["/" + s for s in samples]
    assert (tmp_path / "data/catalogue.db").exists()


@pytest.mark.parametrize("args", [["sync"], ["items", "list", "photos"]])
def test_progress_bars_stay_off_stdout_when_piped(run, storage, args):
    for i in range(30):
        put_file(storage, f"{i}.jpg")
    run("sync")
    result = run(*args, "--json")
    for line in result.stdout.splitlines():
        json.loads(line)
    assert "\r" not in result.stderr  # no bar drawn: stderr is not a terminal
