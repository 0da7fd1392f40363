"""The [daemon] and [[sources]] config: errors name the key; secrets stay secret."""

from __future__ import annotations

import pytest

from conftest import write_config
from syncd.config import load_config
from syncd.errors import ConfigError

BASE = """
    [[drivers]]
    name = "disk"
    kind = "local"
    root = "store"

    [[datasets]]
    name = "photos"
    driver = "disk"
    """


def load(tmp_path, extra):
    return load_config(write_config(tmp_path / "syncd.toml", BASE + extra))


def test_defaults_and_values(tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_TOKEN", "very-secret")
    config = load(tmp_path, """
    [daemon]
    listen = "127.0.0.1:8787"
    hook_token = "${HOOK_TOKEN}"
    on_delete = "remove"

    [[sources]]
    kind = "watch"
    driver = "disk"

    [[sources]]
    kind = "sqs"
    queue_url = "http://127.0.0.1:5000/123456789012/q"
    """)
    assert config.hook_token() == "very-secret"  # read when the daemon asks for it
    assert "very-secret" not in repr(config) and "very-secret" not in str(config.daemon)
    assert [s.kind for s in config.sources] == ["watch", "sqs"]
    assert config.sources[1].wait_seconds == 10
    assert load(tmp_path, "").daemon.rescan_interval_seconds == 3600


@pytest.mark.parametrize("extra, message", [
    ('[daemon]\nlisten = "8787"', "daemon.listen"),
    ('[daemon]\non_delete = "shred"', "daemon.on_delete"),
    ('[daemon]\nrescan_every = 5', "daemon.rescan_every: unknown key"),
    ('[[sources]]\nkind = "watch"\ndriver = "nope"', "sources[0].driver"),
    ('[[sources]]\nkind = "sqs"', "queue_url: missing"),
    ('[[sources]]\nkind = "kafka"', "sources[0]"),
    ('[[sources]]\nkind = "pubsub"\nsubscription = "bad"', "subscription"),
    ('[[datasets]]\nname = "x"\ndriver = "disk"\nrescan_interval_seconds = -1', "rescan_interval_seconds"),
])
def test_errors_name_the_key(tmp_path, extra, message):
    with pytest.raises(ConfigError) as error:
        load(tmp_path, extra)
    assert message in str(error.value)


def test_secret_values_never_appear_in_errors(tmp_path):
    with pytest.raises(ConfigError) as error:
        load(tmp_path, '[daemon]\nhook_token = "leaky-secret"\nlisten = "bad"')
    assert "leaky-secret" not in str(error.value)
