"""drivers.options: the validation every [[drivers]] table and config section goes through
(msgspec underneath): errors name the key and never quote a secret; choices are listed in
the order they are declared; secrets show stars everywhere but get_secret_value()."""

from __future__ import annotations

import pickle

import pytest

import drivers
from drivers.options import InvalidOptions, convert
from syncd.service.daemon_config import SourceConfig


def test_a_secret_shows_stars_in_repr_str_and_the_options_repr():
    options = convert({"name": "s3", "kind": "s3", "bucket": "b", "secret_access_key": "hunter2-xyz"},
                      drivers.options_model("s3"))
    assert options.secret_access_key.get_secret_value() == "hunter2-xyz"
    for shown in (repr(options), str(options.secret_access_key), f"{options.secret_access_key}"):
        assert "hunter2" not in shown
    assert pickle.loads(pickle.dumps(options)) == options  # worker processes get equal options


def test_a_mistyped_secret_is_named_and_not_quoted():
    with pytest.raises(InvalidOptions) as error:
        convert({"name": "s3", "kind": "s3", "bucket": "b", "secret_access_key": 1234567},
                drivers.options_model("s3"))
    assert str(error.value) == "secret_access_key: expected `str`, got `int`"
    assert "1234567" not in str(error.value)


@pytest.mark.parametrize("table, message", [
    ({"name": "d", "kind": "local", "root": "/x", "permissions": ["get", "fly"]},
     "permissions[1]: 'fly' is not one of: list, get, put, delete"),
    ({"name": "d", "kind": "local"}, "root: missing"),
    ({"name": "d", "kind": "local", "root": "/x", "rooot": 1}, "rooot: unknown key"),
    ({"name": "", "kind": "local", "root": "/x"}, "name: expected `str` of length >= 1"),
    ({"name": "d", "kind": "local", "root": "/x", "path": "a/../b"},
     "path: 'a/../b' must be a plain folder path"),
])
def test_errors_name_the_key(table, message):
    with pytest.raises(InvalidOptions) as error:
        convert(table, drivers.options_model("local"))
    assert str(error.value) == message


def test_a_tagged_union_lists_its_kinds_and_normalises_on_load():
    with pytest.raises(InvalidOptions) as error:
        convert([{"kind": "kafka"}], tuple[SourceConfig, ...])
    assert str(error.value) == "[0].kind: 'kafka' is not one of: watch, sqs, pubsub, azure_queue"
    (source,) = convert([{"kind": "sqs", "queue_url": "https://q"}], tuple[SourceConfig, ...])
    assert source.kind == "sqs" and source.wait_seconds == 10
    local = convert({"name": "d", "kind": "local", "root": "~/x", "path": "/a/b/"},
                    drivers.options_model("local"))
    assert local.path == "a/b" and not str(local.root).startswith("~")
