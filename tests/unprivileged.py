"""Running a function as an unprivileged user, for tests of permission faults.

Root ignores file permissions (CAP_DAC_OVERRIDE), and the tests run as root, so a test of an
unreadable folder forks, drops to `nobody` in the child and runs the code under test there.
The interpreter's own files need not be readable by nobody: the child is a fork, with every
module the parent imported already loaded."""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

NOBODY = 65534


def shared_folder() -> Path:
    """A fresh folder that `nobody` owns (pytest's tmp_path is root's, mode 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="syncd-unpriv-"))
    os.chown(folder, NOBODY, NOBODY)
    return folder


@pytest.fixture
def nobody_tree():
    """A folder `nobody` owns, removed afterwards (with any folder a test made unreadable)."""
    folder = shared_folder()
    yield folder
    for directory, folders, _ in os.walk(folder):
        for name in folders:
            os.chmod(os.path.join(directory, name), 0o755)
    shutil.rmtree(folder)


def give_to_nobody(path: Path) -> None:
    for directory, folders, files in os.walk(path):
        for name in [directory, *(os.path.join(directory, f) for f in folders + files)]:
            os.lchown(name, NOBODY, NOBODY)


def as_nobody(function: Callable[[], object]) -> object:
    """Run `function` in a forked child as uid/gid 65534; return its result or raise its error."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            outcome = ("ok", function())
        except BaseException as error:  # handed to the parent
            outcome = ("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()}")
        with os.fdopen(write_end, "wb") as out:
            out.write(pickle.dumps(outcome))
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as source:
        data = source.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data)
    if kind == "error":
        raise AssertionError(f"in the unprivileged child: {value}")
    return value
