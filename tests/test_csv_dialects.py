"""`syncd import csv` reads Clarifai's inputs CSV and the reference SDK's upload columns too."""

from __future__ import annotations

from conftest import put_file
from syncd.imports.csv_import import import_csv
from test_csv_import import PNG, read_csv, write_csv


def items_by_path(app):
    return {i["filename"]: i for i in app.catalogue.iter_items(app.dataset("photos"))}


def test_clarifai_csv_links_urls_uploads_files_and_keeps_concepts_metadata_geopoints(app, storage, tmp_path):
    put_file(tmp_path, "pics/cat.png", PNG)
    source = write_csv(tmp_path / "clarifai.csv", ["inputid", "input", "concepts", "metadata", "geopoints"], [
        ["street", "https://samples.example.com/metro-north.jpg", "train,city", "{'camera': 'cam_01'}", "-73.9,40.7"],
        ["cat1", "pics/cat.png", "cat", "", ""],
        ["", "pics/cat.png", "", "", ""],
        ["bad", "pics/cat.png", "", "", "north"],
        ["gone", "pics/missing.png", "", "", ""],
        ["meta", "pics/cat.png", "", "['not', 'an object']", ""],
    ])
    result = import_csv(app, "photos", source)
    assert (result.total, result.created, result.failed) == (6, 3, 3)
    items = items_by_path(app)
    assert sorted(items) == ["/clarifai/cat.png", "/clarifai/cat1.png", "/clarifai/street_link.json"]
    link = items["/clarifai/street_link.json"]
    assert link["type"] == "link"
    assert link["metadata"]["user"] == {"concepts": ["train", "city"], "camera": "cam_01",
                                        "geopoints": {"longitude": -73.9, "latitude": 40.7}}
    assert items["/clarifai/cat1.png"]["metadata"]["user"] == {"concepts": ["cat"]}
    assert (storage / "clarifai/cat1.png").read_bytes() == PNG
    errors = [row[-1] for row in read_csv(result.failures)[1:]]
    assert errors == [
        "clarifai.csv row 4 (line 5): geopoints: expected 'longitude,latitude', got 'north'",
        f"clarifai.csv row 5 (line 6): input: no such file: {tmp_path / 'pics/missing.png'}",
        "clarifai.csv row 6 (line 7): metadata: expected a JSON object",
    ]
    assert read_csv(result.failures)[0] == ["inputid", "input", "concepts", "metadata", "geopoints", "error"]


def test_reference_sdk_upload_columns_go_to_remote_path_and_failures_reimport(app, storage, tmp_path):
    put_file(tmp_path, "local/a.png", PNG)
    source = write_csv(tmp_path / "upload.csv",
                       ["local_path", "remote_path", "remote_name", "item_metadata", "item_description"], [
        ["local/a.png", "/cats", "tabby.png", '{"user": {"colour": "orange"}}', "a tabby"],
        ["local/a.png", "", "", "", ""],
        ["local/b.png", "/cats", "", "", ""],
    ])
    result = import_csv(app, "photos", source, folder="/in")
    assert (result.total, result.created, result.failed) == (3, 2, 1)
    items = items_by_path(app)
    assert sorted(items) == ["/in/a.png", "/in/cats/tabby.png"]
    tabby = items["/in/cats/tabby.png"]
    assert tabby["metadata"]["user"] == {"colour": "orange"} and tabby["description"] == "a tabby"
    # The failed row, fixed at its source, imports from the failures file as it is.
    put_file(tmp_path, "local/b.png", PNG + b"b")
    again = import_csv(app, "photos", result.failures, folder="/in")
    assert (again.created, again.failed, again.failures) == (1, 0, None)
    assert "/in/cats/b.png" in items_by_path(app)


def test_unknown_columns_name_the_dialect(app, tmp_path):
    source = write_csv(tmp_path / "x.csv", ["input", "labels"], [["https://a.example.com/a.jpg", "x"]])
    import pytest

    from syncd.errors import InputError
    with pytest.raises(InputError, match="unknown column 'labels' .*inputid, input, concepts, metadata, geopoints .*clarifai CSV"):
        import_csv(app, "photos", source)
