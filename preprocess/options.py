"""What preprocessing is asked to do (`Options`) and what it found (`Outcome`, `Thumbnail`).

Light on purpose (no Pillow): the catalogue side builds Options and reads Outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .limits import DEFAULT_MAX_PIXELS, FORMATS
from .preview import Preview


@dataclass(frozen=True)
class Thumbnail:
    data: bytes
    format: str  # jpeg | webp
    width: int
    height: int

    @property
    def extension(self) -> str:
        return FORMATS[self.format][0]

    @property
    def content_type(self) -> str:
        return FORMATS[self.format][1]


@dataclass(frozen=True)
class Options:
    thumbnails: bool = True
    thumbnail_size: int = 256  # pixels, longest side
    thumbnail_format: str = "jpeg"  # jpeg | webp
    thumbnail_quality: int = 85  # 1-100
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are refused (decompression bombs)
    head_bytes: int = 64 * 1024  # the first ranged read
    keep_bytes: bool = False  # return the whole file's bytes (for custom preprocessors)
    video_preview: bool = False  # videos: also a 360p H.264 MP4 preview (a temporary file)
    memory_mb: int | None = None  # most a thumbnail's decode may take; None: no bound

    def __post_init__(self) -> None:
        if self.thumbnail_format not in FORMATS:
            raise ValueError(f"thumbnail_format {self.thumbnail_format!r}: one of {', '.join(FORMATS)}")


@dataclass
class Outcome:
    system: dict[str, Any]  # metadata.system fields found, also when an error stopped the rest
    thumbnail: Thumbnail | None = None
    errors: list[str] = field(default_factory=list)
    data: bytes | None = None  # the whole file, when it was read (or asked for)
    preview: Preview | None = None  # a video's preview: a temporary file, removed by close()

    @property
    def ok(self) -> bool:
        return not self.errors

    def close(self) -> None:
        """Remove the temporary files this outcome holds (a video preview)."""
        if self.preview is not None:
            self.preview.remove()
