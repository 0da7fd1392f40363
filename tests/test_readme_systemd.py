"""Issue 11 #17: the README's systemd unit is one systemd accepts as it reads it."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def unit_text() -> str:
    blocks = re.findall(r"```ini\n(.*?)```", README.read_text(), re.S)
    [unit] = [b for b in blocks if "[Service]" in b and "ExecStart=" in b]
    return unit


def test_no_setting_has_a_trailing_comment():
    """systemd takes '#' and ';' as comments only at the start of a line: anything after a
    value is part of it (EnvironmentFile=-/etc/x.env  # ... names a file that never exists)."""
    for line in unit_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        name, _, value = line.partition("=")
        assert re.fullmatch(r"[A-Za-z]+", name), line
        assert " #" not in value and "\t#" not in value and " ;" not in value, line


def test_the_unit_names_a_user_and_the_readme_says_how_to_make_it():
    unit = unit_text()
    user = re.search(r"^User=(\S+)$", unit, re.M)[1]
    start = re.search(r"^ExecStart=(\S+)", unit, re.M)[1]
    text = README.read_text()
    assert f"useradd --system" in text and re.search(rf"useradd .*\b{user}\b", text)
    venv = start.rsplit("/bin/", 1)[0]
    assert f"-m venv {venv}" in text
