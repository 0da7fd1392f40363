"""Upload controls (the Roboflow upload block's), for `upload` and every import: a dataset's
`[datasets.upload]` table.

- `sample_percent`: each file or row is kept with this chance; `sample_seed` makes the choice
  repeatable (without one, a seed is drawn and reported, so a run can be repeated);
- `quota_per_minute`, `quota_per_hour`, `quota_per_day`: the dataset's items created in the
  trailing window, whichever way (uploads, imports, files that arrived on their own); past a
  quota the rest are refused (reported and written to the failures file, to be fed back
  later), never silently dropped;
- `max_size` (pixels, longest side) and `jpeg_quality`: images are resized, keeping their
  aspect ratio, and JPEGs re-encoded, before they are stored;
- `batch_prefix` + `batch_every` (never | daily | weekly | monthly): a labeling batch name
  recorded on each item as `metadata.user.batch`; `tags` as `metadata.user.tags`.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from ..catalogue import Catalogue, Dataset
from ..catalogue.arrivals import created_since
from .writes import Content

WINDOWS = {"quota_per_minute": timedelta(minutes=1), "quota_per_hour": timedelta(hours=1),
           "quota_per_day": timedelta(days=1)}


def batch_name(prefix: str | None, every: str, now: datetime) -> str | None:
    if not prefix:
        return None
    if every == "daily":
        return f"{prefix}-{now:%Y-%m-%d}"
    if every == "weekly":
        year, week, _ = now.isocalendar()
        return f"{prefix}-{year}-W{week:02d}"
    if every == "monthly":
        return f"{prefix}-{now:%Y-%m}"
    return prefix


@dataclass
class Controls:
    """One run's controls: decides for each task, and counts what it decided."""

    settings: Any  # syncd.config.UploadControls
    seed: int
    used: dict[str, int] = field(default_factory=dict)  # quota key -> items in its window
    sampled_out: int = 0
    refused: int = 0
    batch: str | None = None

    @classmethod
    def start(cls, catalogue: Catalogue, dataset: Dataset, settings: Any, *,
              now: datetime | None = None) -> Controls:
        now = now or datetime.now(UTC)
        seed = settings.sample_seed if settings.sample_seed is not None else random.SystemRandom().randrange(2**32)
        quotas = [key for key in WINDOWS if getattr(settings, key) is not None]
        since = [(now - WINDOWS[key]).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                 for key in quotas]
        used = dict(zip(quotas, created_since(catalogue, dataset, since), strict=True))
        controls = cls(settings, seed, used, batch=batch_name(settings.batch_prefix, settings.batch_every, now))
        controls._random = random.Random(seed)
        return controls

    @property
    def active(self) -> bool:
        s = self.settings
        return (s.sample_percent < 100 or bool(self.used) or s.max_size is not None
                or s.jpeg_quality is not None or bool(s.tags) or self.batch is not None)

    def admit(self) -> tuple[str, str] | None:
        """None to go on; else (status, reason): 'sampled' or 'refused'."""
        percent = self.settings.sample_percent
        if percent < 100 and self._random.random() * 100 >= percent:
            self.sampled_out += 1
            return "sampled", f"left out by sample_percent = {percent:g} (seed {self.seed})"
        for key, count in self.used.items():
            limit = getattr(self.settings, key)
            if count >= limit:
                self.refused += 1
                return "refused", f"{key} = {limit} reached; import this again later"
        for key in self.used:
            self.used[key] += 1
        return None

    def apply(self, task):
        """The task with the batch and tags in its user metadata, and its bytes resized."""
        s = self.settings
        user = dict(task.facts.user)
        if s.tags:
            user["tags"] = list(s.tags)
        if self.batch is not None:
            user["batch"] = self.batch
        task = replace(task, facts=replace(task.facts, user=user))
        if (s.max_size is not None or s.jpeg_quality is not None) and task.facts.type == "file":
            load = task.load
            task = replace(task, load=lambda: _resized(load(), s.max_size, s.jpeg_quality))
        return task

    def report(self) -> dict[str, Any]:
        s = self.settings
        report: dict[str, Any] = {}
        if s.sample_percent < 100:
            report["sample"] = {"percent": s.sample_percent, "seed": self.seed,
                                "left_out": self.sampled_out}
        if self.used:
            report["quota"] = {key: {"limit": getattr(s, key), "used": count}
                               for key, count in self.used.items()} | {"refused": self.refused}
        if self.batch is not None:
            report["batch"] = self.batch
        return report


def arrival_metadata(settings: Any, *, now: datetime | None = None) -> dict[str, Any]:
    """What a file that arrives in the dataset on its own (the daemon's events, a sync or
    rescan) gets in `metadata.user` from the upload controls: `tags` and the `batch` of now.
    Sampling and quotas decide whether it gets an item at all (syncd.sync.admission); it is
    never resized (README: Upload controls)."""
    user: dict[str, Any] = {}
    if settings.tags:
        user["tags"] = list(settings.tags)
    batch = batch_name(settings.batch_prefix, settings.batch_every, now or datetime.now(UTC))
    if batch is not None:
        user["batch"] = batch
    return user


def _resized(content: Content, max_size: int | None, quality: int | None) -> Content:
    """An image's bytes fitted into max_size x max_size (aspect kept) and JPEGs re-encoded at
    `quality`; anything Pillow cannot read, and images already small enough that need no
    re-encoding, are returned as they are."""
    from PIL import Image, UnidentifiedImageError

    try:
        content.stream.seek(0)
        image = Image.open(content.stream)
        fmt = image.format
    except (UnidentifiedImageError, OSError):
        content.stream.seek(0)
        return content
    too_big = max_size is not None and max(image.size) > max_size
    reencode = quality is not None and fmt == "JPEG"
    if not (too_big or reencode) or fmt not in ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"):
        content.stream.seek(0)
        return content
    exif = image.info.get("exif")
    if too_big:
        image.thumbnail((max_size, max_size))
    out = io.BytesIO()
    options: dict[str, Any] = {}
    if fmt == "JPEG":
        options["quality"] = quality or 85
        if exif:
            options["exif"] = exif
    image.save(out, fmt, **options)
    content.stream.close()
    return Content.of_bytes(out.getvalue())
