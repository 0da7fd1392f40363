"""Downstream writes: put an object through the driver, then record it in the catalogue.

The driver (wrapped in its permission guard) does the put; the ObjectInfo it returns (size,
mtime, etag, md5) is what the catalogue records, so the next sync lists the same facts and
sees the object as unchanged. A new item, or new content, gets its preprocessing job in the
same transaction as the item row, as the indexer does.

Writing is split in two so that a pool of threads can do the slow part:
`store` (any thread) puts the bytes unless the same content is already there;
`record` (the catalogue's thread) writes the item and its job.

Content identity: an item's `md5` column when the storage gives one; otherwise the MD5 that
syncd computed when it wrote the object (`metadata.system.contentMd5`), trusted while the
object's etag is still the one syncd saw then (`contentEtag`); otherwise, if the sizes match,
the stored bytes are read and hashed.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from drivers import Driver, DriverError, InvalidKey, ObjectInfo
from drivers.base import check_key, is_hidden

from ..catalogue import Catalogue, Dataset, arrivals, items, normalize_filename
from ..sync import rules
from ..sync.rules import RULES, Change

HASH_CHUNK = 1024 * 1024  # bytes


@dataclass(frozen=True)
class Existing:
    """What the catalogue knows of the object at a path, to tell whether new content differs."""

    size: int | None
    md5: str | None  # an MD5 of the content that can be trusted, if any


@dataclass
class Content:
    """Bytes to write, with their MD5 and size known."""

    stream: BinaryIO  # seekable
    md5: str
    size: int
    content_type: str | None = None  # as the source said, if it did

    @classmethod
    def of_bytes(cls, data: bytes) -> Content:
        return cls(io.BytesIO(data), hashlib.md5(data).hexdigest(), len(data))


@dataclass
class Stored:
    """The outcome of `store`: the ObjectInfo of a put, or None when the content was already there."""

    key: str
    info: ObjectInfo | None
    md5: str
    size: int


@dataclass
class ItemFacts:
    """What to record for an item besides its storage facts."""

    type: str = "file"  # file | link
    system: dict[str, Any] = field(default_factory=dict)  # merged into metadata.system
    user: dict[str, Any] = field(default_factory=dict)  # merged into metadata.user
    description: str | None = None
    # The reference SDK's item_metadata: `user` replaces metadata.user instead of merging into
    # it, and each other top-level key replaces metadata.<key> (as dict.update does).
    replace_user: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def item_metadata(value: Any, fail: Callable[[str, str], Exception], key: str
                  ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The one rule for metadata given with an imported item (CSV `item_metadata`, JSONL
    `metadata`): the object is the item's whole `metadata`, as the reference SDK's
    `item_metadata` sets it. Returns (its `user`, which replaces metadata.user, or None when
    not given; its other top-level keys, each replacing metadata.<key>). `system` is refused:
    syncd writes it. `fail(key, what)` makes the error naming the row and key."""
    if not isinstance(value, dict):
        raise fail(key, f"expected a JSON object, got {type(value).__name__}")
    if "system" in value:
        raise fail(key, "system: metadata.system is written by syncd, not by imports;"
                   " put the keys under \"user\"")
    value = dict(value)
    user = value.pop("user", None)
    if user is not None and not isinstance(user, dict):
        raise fail(key, f"user: expected a JSON object, got {type(user).__name__}")
    return user, value


def key_of(filename: str) -> str:
    """The driver key of a dataset filename ('/a/b.jpg' -> 'a/b.jpg'), checked."""
    key = check_key(normalize_filename(filename)[1:])
    if is_hidden(key):
        raise InvalidKey(f"{filename!r} is inside the hidden artifacts folder")
    return key


def existing(catalogue: Catalogue, dataset: Dataset, filename: str) -> Existing | None:
    row = catalogue.item_row(dataset, filename)
    if row is None or row["state"] != "present":
        return None
    md5 = row["md5"] or None
    if not md5 and row["system"]:
        system = json.loads(row["system"])
        if system.get("contentEtag") is not None and system.get("contentEtag") == row["etag"]:
            md5 = system.get("contentMd5")
    return Existing(row["size"], md5)


def same_content(driver: Driver, key: str, known: Existing | None, content: Content) -> bool:
    if known is None or known.size != content.size:
        return False
    if known.md5:
        return known.md5 == content.md5
    if "get" not in getattr(driver, "permissions", ("get",)):
        return False
    digest = hashlib.md5()
    try:
        with driver.open(key) as stream:
            while chunk := stream.read(HASH_CHUNK):
                digest.update(chunk)
    except DriverError:
        return False
    return digest.hexdigest() == content.md5


def store(driver: Driver, filename: str, content: Content, known: Existing | None, *,
          content_type: str | None = None, overwrite: bool = True) -> Stored:
    """Put `content` at `filename` unless the same content is there already. Any thread.
    Without `overwrite`, other content already there raises AlreadyExists."""
    key = key_of(filename)
    if same_content(driver, key, known, content):
        return Stored(key, None, content.md5, content.size)
    content.stream.seek(0)
    info = driver.put(key, content.stream, content_type=content_type, overwrite=overwrite)
    return Stored(key, info, content.md5, content.size)


def record(catalogue: Catalogue, dataset: Dataset, stored: Stored, facts: ItemFacts) -> tuple[str, str]:
    """Write the item, with the jobs syncd.sync.rules calls for. Returns (status, item id),
    status being created, updated (content or metadata) or unchanged."""
    filename = "/" + stored.key
    with catalogue.transaction(immediate=True):
        row = items.find(catalogue, dataset, filename)
        system_patch = dict(facts.system)
        if facts.description is not None:
            system_patch["description"] = facts.description
        if stored.info is not None:
            system_patch.update(contentMd5=stored.md5, contentEtag=stored.info.etag)
        if row is None:
            if stored.info is None:  # it was there when `store` looked: removed meanwhile
                raise RuntimeError(f"{filename}: the item left the catalogue during the write; run again")
            info = stored.info
            pk = items.insert(catalogue, dataset, filename, size=info.size, mtime=info.mtime,
                              etag=info.etag, md5=info.md5, type=facts.type, system=system_patch,
                              user=facts.user, extra=facts.extra)
            items.apply_rule(catalogue, RULES[Change.CREATED], [pk])
            # Seen as an arrival first (the daemon's event for this very write) and refused:
            # it has an item now (syncd.sync.admission).
            arrivals.forget(catalogue, dataset, [filename])
            return "created", catalogue.item_id(pk)
        pk = row["pk"]
        system = json.loads(row["system"]) if row["system"] else {}
        user = json.loads(row["user"]) if row["user"] else {}
        new_system = deep_merge(system, system_patch)
        new_user = dict(facts.user) if facts.replace_user else deep_merge(user, facts.user)
        extra = json.loads(row["extra"]) if row["extra"] else {}
        new_extra = {**extra, **facts.extra}
        info = stored.info
        if info is None:
            if (new_system, new_user, new_extra, facts.type) == (system, user, extra, row["type"]):
                return "unchanged", catalogue.item_id(pk)
            items.set_metadata(catalogue, pk, type=facts.type, system=new_system, user=new_user,
                               extra=new_extra)
            return "updated", catalogue.item_id(pk)
        same_bytes = rules.same_content(row, info)
        items.set_facts(catalogue, pk, filename, size=info.size, mtime=info.mtime, etag=info.etag,
                        md5=info.md5)
        items.set_metadata(catalogue, pk, type=facts.type, system=new_system, user=new_user,
                           extra=new_extra)
        if not same_bytes:
            items.apply_rule(catalogue, RULES[Change.CONTENT_CHANGED], [pk])
        elif row["state"] != "present":
            items.apply_rule(catalogue, RULES[Change.REVIVED], [pk])
        return "updated", catalogue.item_id(pk)


def put_item(catalogue: Catalogue, dataset: Dataset, driver: Driver, filename: str,
             content: Content, facts: ItemFacts, *, content_type: str | None = None) -> tuple[str, str]:
    """`store` then `record`, on one thread."""
    stored = store(driver, filename, content, existing(catalogue, dataset, filename),
                   content_type=content_type)
    return record(catalogue, dataset, stored, facts)


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`base` with `patch` merged in: objects merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


