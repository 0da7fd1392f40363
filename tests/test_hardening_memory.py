"""Issue 11 #16: a worker's image decode is bounded by preprocess.memory_mb; a refused image
gets its metadata and a reason that says why, and a JPEG is decoded at reduced scale."""

from __future__ import annotations

import io

from PIL import Image

from conftest import local_config, put_file
from syncd.app import App


def image_bytes(size, fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (40, 160, 90)).save(out, fmt)
    return out.getvalue()


def test_an_image_over_the_memory_budget_is_refused_with_its_reason(tmp_path, storage):
    put_file(storage, "huge.png", image_bytes((4000, 4000), "PNG"))  # ~69 MB to decode
    put_file(storage, "huge.jpg", image_bytes((4000, 4000), "JPEG"))  # decoded at 1/8 scale
    put_file(storage, "small.png", image_bytes((300, 200), "PNG"))
    config = local_config(tmp_path, storage, extra="""
        [preprocess]
        memory_mb = 64
        workers = 1
        """)
    with App.from_file(config) as app:
        app.sync("photos")
        result = app.run_jobs()
        assert (result.done, result.failed) == (2, 1)
        ds = app.dataset("photos")
        huge = app.catalogue.get_item(ds, "/huge.png")["metadata"]["system"]
        assert (huge["width"], huge["height"]) == (4000, 4000)
        assert "thumbnailId" not in huge
        [reason] = [job["error"] for job in app.jobs().rows() if job["filename"] == "/huge.png"]
        assert "memory budget" in reason and "preprocess.memory_mb = 64" in reason
        for name in ("/huge.jpg", "/small.png"):
            assert "thumbnailId" in app.catalogue.get_item(ds, name)["metadata"]["system"]
