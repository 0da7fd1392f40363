"""The query language (syncd.catalogue.query) on a real catalogue, through `items list --where`."""

from __future__ import annotations


import pytest

from conftest import put_file
from syncd.catalogue import items
from syncd.catalogue.query import QueryError, compile_query
from syncd.usermeta import set_user_metadata

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL

FILES = {
    "/cats/a.jpg": {"camera": "cam_01", "lot": 7, "tags": ["cat", "indoor"], "ok": True},
    "/cats/b.png": {"camera": "cam_01", "lot": "7", "site": {"area": "north"}},
    "/cats/deep/c.jpg": {"camera": "cam_02", "lot": 12.5, "tags": ["dog"]},
    "/dogs/Dog One.jpg": {"camera": "cam_03", "note": "a cat is here"},
    "/readme.txt": {},
}


@pytest.fixture
def catalogue(app, storage):
    for name in FILES:
        put_file(storage, name.lstrip("/"), name * 3)
    app.sync("photos")
    dataset = app.dataset("photos")
    set_user_metadata(app.catalogue, dataset, [(n, v) for n, v in FILES.items() if v])
    with app.catalogue.transaction():  # what preprocessing would have written
        for name, mimetype, width in [("/cats/a.jpg", "image/jpeg", 640), ("/cats/b.png", "image/png", 2000),
                                      ("/cats/deep/c.jpg", "image/jpeg", 1200)]:
            pk = items.find(app.catalogue, dataset, name)["pk"]
            items.set_metadata(app.catalogue, pk,
                               system={"mimetype": mimetype, "width": width, "exif": {"Make": "Canon"}})
    return app


def found(app, *queries):
    dataset = app.dataset("photos")
    return [i["filename"] for i in app.catalogue.iter_items(dataset, where=compile_query(list(queries)))]


@pytest.mark.parametrize("query, expected", [
    ("user.camera = cam_01", ["/cats/a.jpg", "/cats/b.png"]),
    ("user.lot = 7", ["/cats/a.jpg"]),                        # the number, not the string "7"
    ('user.lot = "7"', ["/cats/b.png"]),
    ("user.lot != 7", ["/cats/b.png", "/cats/deep/c.jpg", "/dogs/Dog One.jpg", "/readme.txt"]),
    ("user.lot > 7", ["/cats/deep/c.jpg"]),
    ("user.lot >= 7", ["/cats/a.jpg", "/cats/deep/c.jpg"]),
    ("user.lot < 12.5", ["/cats/a.jpg"]),
    ("user.lot <= 12.5", ["/cats/a.jpg", "/cats/deep/c.jpg"]),
    ("user.camera in (cam_02, cam_03)", ["/cats/deep/c.jpg", "/dogs/Dog One.jpg"]),
    ("user.tags contains cat", ["/cats/a.jpg"]),
    ("user.note contains cat", ["/dogs/Dog One.jpg"]),      # a substring of a string
    ("user.ok = true", ["/cats/a.jpg"]),
    ("user.ok = 1", []),                                      # a boolean is not a number
    ('user.tags = ["dog"]', ["/cats/deep/c.jpg"]),
    ("user.site.area = north", ["/cats/b.png"]),
    ("user.site exists", ["/cats/b.png"]),
    ("user.tags not exists", ["/cats/b.png", "/dogs/Dog One.jpg", "/readme.txt"]),
    ("not user.camera exists", ["/readme.txt"]),
    ('filename glob "/cats/*.jpg"', ["/cats/a.jpg", "/cats/deep/c.jpg"]),
    ("name like 'dog%'", ["/dogs/Dog One.jpg"]),              # like is case-insensitive
    ('name = "Dog One.jpg"', ["/dogs/Dog One.jpg"]),
    ("dir = /cats", ["/cats/a.jpg", "/cats/b.png"]),
    ("dir = /", ["/readme.txt"]),
    ("folder = /cats", ["/cats/a.jpg", "/cats/b.png", "/cats/deep/c.jpg"]),
    ("folder = /cats/deep/", ["/cats/deep/c.jpg"]),
    ("mimetype = image/jpeg and width >= 1000", ["/cats/deep/c.jpg"]),
    ("system.exif.Make = Canon and not mimetype = image/png", ["/cats/a.jpg", "/cats/deep/c.jpg"]),
    ("mimetype = image/png or user.lot = 7 and user.camera = cam_01", ["/cats/a.jpg", "/cats/b.png"]),
    ("(mimetype = image/png or user.lot = 7) and user.tags contains cat", ["/cats/a.jpg"]),
    ("NOT (user.camera = cam_01 OR user.camera = cam_02)", ["/dogs/Dog One.jpg", "/readme.txt"]),
    ("size > 0 and state = present and type = file", list(FILES)),
    ("metadata.user.camera = cam_03", ["/dogs/Dog One.jpg"]),
])
def test_queries(catalogue, query, expected):
    assert found(catalogue, query) == expected


def test_several_queries_all_hold(catalogue):
    assert found(catalogue, "user.camera = cam_01", "mimetype = image/png") == ["/cats/b.png"]


@pytest.mark.parametrize("query, message", [
    ("user.camera", "expected =, !=, <, <=, >, >=, in, contains, exists, glob or like at position 12 (end of query)"),
    ("user.camera = ", "expected a value at position 15 (end of query)"),
    ("camera = 1", "unknown field 'camera'"),
    ("user.lot = 7 and", "expected a field (user.KEY, system.KEY, filename, ...) at position 17"),
    ("(user.lot = 7", "expected ')' at position 14"),
    ("user.lot = 7 user.x = 1", "expected and, or, or the end at position 14 ('user.x = 1')"),
    ("user.lot in 1, 2", "expected '(' after in at position 13"),
    ("user.lot = 'seven", "unterminated string at position 12"),
    ('user.lot = "seven', "not valid JSON"),
    ("name glob 3", "glob takes a text pattern at position 6"),
    ("", "empty query"),
])
def test_errors_name_the_position(query, message):
    with pytest.raises(QueryError) as error:
        compile_query(query)
    assert message in str(error.value)


def test_cli_where_takes_queries(catalogue, run):
    listed = run.json_lines("items", "list", "photos", "--where", "user.lot >= 7",
                            "--where", "mimetype = image/jpeg")
    assert [i["filename"] for i in listed] == ["/cats/a.jpg", "/cats/deep/c.jpg"]
    result = run("items", "list", "photos", "--where", "user.lot >", expect=2)
    assert "expected a value at position 11" in result.stderr


def test_folders_and_glob_prefixes_bound_the_index_range():
    from syncd.catalogue.query import filename_bounds

    assert filename_bounds("folder = /a/b and user.x = 1") == ("/a/b/", "/a/b0")
    assert filename_bounds(["folder = /a", "folder = /a/b"]) == ("/a/b/", "/a/b0")
    low, high = filename_bounds('filename glob "/f0*.jpg"')
    assert low < "/f0" < "/f0zzz" < high and not ("/f" > low) and high == "/f1"
    assert filename_bounds("user.x = 1 or folder = /a") is None  # not bound when an OR escapes
    assert filename_bounds("not folder = /a") is None
