"""The issue's acceptance check: `syncd daemon` with the shipped example config picks up a
file copied into the example folder, and `syncd items list` shows it (with its thumbnail
once preprocessed)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys

from daemon_support import ROOT, DaemonProcess, thumbnail_of, wait_for


def test_example_config_picks_up_a_copied_file(tmp_path):
    shutil.copy(ROOT / "config.example.toml", tmp_path / "syncd.toml")
    shutil.copytree(ROOT / "examples", tmp_path / "examples",
                    ignore=shutil.ignore_patterns(".dataloop"))  # thumbnails of earlier runs
    daemon = DaemonProcess(tmp_path / "syncd.toml", tmp_path / "daemon.log").start()

    def listed():
        result = subprocess.run(
            [sys.executable, "-m", "syncd", "--config", str(tmp_path / "syncd.toml"),
             "items", "list", "photos", "--json"],
            cwd=ROOT, capture_output=True, text=True, timeout=60)
        return {i["filename"]: i for i in map(json.loads, result.stdout.splitlines())}

    try:
        wait_for(lambda: "/field.jpg" in listed(), what="the example folder synced at start")
        shutil.copy(tmp_path / "examples/photos/field.jpg", tmp_path / "examples/photos/copied.jpg")
        item = wait_for(lambda: thumbnail_of(listed().get("/copied.jpg")) and listed()["/copied.jpg"],
                        what="the copied file listed, with its thumbnail")
        assert item["state"] == "present" and item["metadata"]["system"]["mimetype"] == "image/jpeg"
        assert (tmp_path / "examples/photos" / item["metadata"]["system"]["thumbnailId"]).exists()
        assert daemon.terminate(signal.SIGTERM) == 0
    finally:
        daemon.close()
