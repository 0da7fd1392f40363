"""Issue 11: a short run of bench/kill9_loop.py (every writer SIGKILLed at random moments,
local folder and S3 in moto) leaves catalogue == storage and no open or duplicated job."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import kill9_loop  # noqa: E402


def test_kill9_loop_local_and_s3(tmp_path, s3_endpoint):
    figures = kill9_loop.run(rounds=10, seed=5, s3_url=s3_endpoint.url, work=tmp_path)
    assert figures["violations"] == []
    assert figures["kills_survived"] == 10
    assert figures["items_checked"]["local"] > 20 and figures["items_checked"]["cloud"] > 20
