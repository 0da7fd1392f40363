"""Constants the rest of syncd reads without importing Pillow (config defaults, job keys)."""

from __future__ import annotations

DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own decompression-bomb error limit
# thumbnail format -> (file extension, content type)
FORMATS: dict[str, tuple[str, str]] = {"jpeg": ("jpg", "image/jpeg"), "webp": ("webp", "image/webp")}
