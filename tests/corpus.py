"""The public sample corpus (tests/data/corpus, see SOURCES.md there) checked against exiftool:
what preprocessing reports beside what exiftool reads from the same files."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

CORPUS = Path(__file__).parent / "data" / "corpus"
# Names for the same type that differ only in spelling: exiftool's -> ours.
MIME_ALIASES = {
    "application/vnd.adobe.photoshop": "image/vnd.adobe.photoshop",  # ours: the IANA name
    "image/x-j2c": "image/j2k",  # a raw JPEG 2000 codestream
    "image/x-tiff-big": "image/tiff",
    "image/pcx": "image/x-pcx",
    "image/x-mpo": "image/mpo",
}
# Where exiftool itself is wrong or silent, shown by the content: it calls plain-text image
# formats text/plain (file(1) and Pillow read them as images).
EXIFTOOL_TEXT_IMAGES = {"image/x-xbitmap", "image/x-xpixmap", "image/x-portable-bitmap",
                        "image/x-portable-graymap", "image/x-portable-pixmap"}
EXIFTOOL_TAGS = ["-MIMEType", "-ImageWidth", "-ImageHeight", "-Orientation", "-GPSLatitude",
                 "-GPSLongitude"]


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "SOURCES.md")


def exiftool(paths: list[Path]) -> dict[str, dict]:
    """exiftool's numeric values (-n) for each file, by path."""
    tool = shutil.which("exiftool")
    if tool is None:
        raise RuntimeError("exiftool is not installed (apt-get install libimage-exiftool-perl)")
    out = subprocess.run([tool, "-json", "-n", "-q", "-q", *EXIFTOOL_TAGS, *map(str, paths)],
                         capture_output=True, check=False).stdout
    return {row["SourceFile"]: row for row in json.loads(out or b"[]")}


def compare(system: dict, tool: dict) -> list[tuple[str, object, object]]:
    """(field, exiftool's, ours) for every field exiftool gives; equal ones included."""
    fields = []
    if "MIMEType" in tool and not (tool["MIMEType"] == "text/plain"
                                   and system.get("mimetype") in EXIFTOOL_TEXT_IMAGES):
        fields.append(("mimetype", MIME_ALIASES.get(tool["MIMEType"], tool["MIMEType"]),
                       system.get("mimetype")))
    for name, key in (("width", "ImageWidth"), ("height", "ImageHeight")):
        if isinstance(tool.get(key), int):
            fields.append((name, tool[key], system.get(name)))
    if isinstance(tool.get("Orientation"), int):
        fields.append(("orientation", tool["Orientation"], (system.get("exif") or {}).get("Orientation")))
    location = system.get("location") or {}
    for name, key in (("latitude", "GPSLatitude"), ("longitude", "GPSLongitude")):
        limit = 90 if name == "latitude" else 180  # exiftool passes out-of-range values on
        if isinstance(tool.get(key), (int, float)) and abs(tool[key]) <= limit:
            ours = location.get(name)
            same = ours is not None and math.isclose(ours, tool[key], abs_tol=1e-5)
            fields.append((name, tool[key], ours if not same else tool[key]))
    return fields
