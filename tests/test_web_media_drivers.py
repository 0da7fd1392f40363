"""Media URLs on every driver (local, and S3, GCS, Azure on their emulators): ranged streams
from the driver, and with `[web] presign = true` a redirect to a pre-signed URL where the
storage and credentials can make one (S3; Azure with an account key), else the stream."""

from __future__ import annotations

import urllib.request

import pytest

from conftest import write_config
from syncd.app import App
from web_support import TOKEN, Client, Served

DATA = bytes(range(256)) * 40


def config_for(tmp_path, store, presign: bool):
    return write_config(tmp_path / f"syncd-{presign}.toml", f"""
[catalogue]
path = "{tmp_path / 'catalogue.db'}"

{store.toml(name="bucket")}

[[datasets]]
name = "media"
driver = "bucket"

[web]
token = "{TOKEN}"
presign = {"true" if presign else "false"}
presign_seconds = 600
""")


@pytest.mark.parametrize("presign", [False, True])
def test_stream_on_every_driver(store, tmp_path, presign):
    store.write_raw(f"{store.path}/clips/a b#1.bin", DATA)
    config = config_for(tmp_path, store, presign)
    with App.from_file(config) as app:
        app.sync("media")
    with Served(config) as served:
        api = Client(served.url, token=TOKEN)
        (item,) = api("/api/v1/datasets/media/items").json()["items"]
        stream = item["stream"].split(served.url, 1)[1]
        answer = api(stream, headers={"Range": "bytes=1000-1999"})
        if presign and store.kind in ("s3", "azure"):
            assert answer.status == 307
            location = answer.headers["Location"]
            assert TOKEN not in location
            request = urllib.request.Request(location, headers={"Range": "bytes=1000-1999"})
            with urllib.request.urlopen(request, timeout=30) as signed:  # no credentials needed
                assert signed.read() == DATA[1000:2000]
        else:
            assert answer.status == 206 and answer.body == DATA[1000:2000]
            assert answer.headers["Content-Range"] == f"bytes 1000-1999/{len(DATA)}"
