"""Linked items: small JSON files pointing at a binary stored elsewhere, in the reference
platform's own format, so that files its SDK writes import unchanged:

    {"type": "link", "shebang": "dataloop",
     "metadata": {"dltype": "link", "linkInfo": {"type": "url", "ref": URL, "mimetype": MIME}}}

The SDK's `UrlLink` names a link from its URL and the uploader stores it as `<name>_link.json`;
`url_link_name`, `url_mimetype` and `link_bytes` do exactly what that code path does (names
included: the SDK drops the dots, so `.../cat.jpg?x=1` is named `catjpg`).

In the catalogue a linked item has `type = 'link'` and keeps the link where the reference
platform keeps it, in `metadata.system.shebang.linkInfo` (and `metadata.system.mimetype`).
"""

from __future__ import annotations

import io
import json
import logging
import mimetypes
import os
import posixpath
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import unquote, urlsplit

from drivers import Driver, DriverError

from ..errors import InputError

if TYPE_CHECKING:  # the HTTP stack is imported by whoever makes a Fetcher
    from .fetch import Fetched, Fetcher

log = logging.getLogger(__name__)

LINK_SUFFIX = "_link.json"
ID_LINK = "id"  # linkInfo.type of a link to another item of the same catalogue, by its id
MAX_LINK_BYTES = 16 * 1024  # a JSON file larger than this is never read as a link during a sync
READERS = 8  # link files read at once during a sync


class LinkError(InputError):
    """A link JSON document is malformed; the message names the file, the key and the fault."""


def url_link_name(url: str) -> str:
    """The name the reference SDK gives a URL link when none is given (`UrlLink.__init__`)."""
    name = os.path.split(url)[-1].replace("/", "").replace("\\", "").replace(".", "")
    return name.split("?")[0]


def url_mimetype(url: str) -> str:
    """The mimetype the reference SDK gives a URL link when none is given."""
    return mimetypes.guess_type(url.split("?")[0])[0] or "image"


def link_filename(name: str) -> str:
    """The file name the reference SDK's uploader gives a link named `name`."""
    return f"{name}{LINK_SUFFIX}"


def url_link_info(url: str, mimetype: str | None = None) -> dict[str, Any]:
    """A `linkInfo` for a URL, keys in the SDK's order."""
    check_url(url, where="URL")
    return {"type": "url", "ref": url, "mimetype": mimetype or url_mimetype(url)}


def link_document(link_info: dict[str, Any]) -> dict[str, Any]:
    return {"type": "link", "shebang": "dataloop",
            "metadata": {"dltype": "link", "linkInfo": dict(link_info)}}


def link_bytes(link_info: dict[str, Any]) -> bytes:
    """The bytes of a link file exactly as the reference SDK writes them (`Uploader.link`)."""
    return json.dumps(link_document(link_info)).encode()


def check_url(url: Any, *, where: str, source: str = "") -> str:
    prefix = f"{source}: " if source else ""
    if not isinstance(url, str) or not url.strip():
        raise LinkError(f"{prefix}{where}: missing (a http or https URL)")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise LinkError(f"{prefix}{where}: {url!r} is not a http or https URL")
    return url


def parse_link(data: bytes | str, *, source: str) -> dict[str, Any]:
    """The linkInfo of a link document, mimetype filled in; LinkError names `source` and the key."""
    try:
        document = json.loads(data)
    except UnicodeDecodeError as error:
        raise LinkError(f"{source}: not UTF-8 text: {error.reason} at byte {error.start}") from None
    except json.JSONDecodeError as error:
        raise LinkError(f"{source}: not valid JSON: {error.msg} (line {error.lineno}, "
                        f"column {error.colno})") from None
    return link_info_of(document, source=source)


def link_info_of(document: Any, *, source: str) -> dict[str, Any]:
    def fail(key: str, what: str) -> LinkError:
        return LinkError(f"{source}: {key}: {what}")

    if not isinstance(document, dict):
        raise LinkError(f"{source}: expected a JSON object, got {_json_type(document)}")
    if document.get("type") != "link":
        raise fail("type", f"expected \"link\", got {json.dumps(document.get('type'))}")
    if document.get("shebang") != "dataloop":
        raise fail("shebang", f"expected \"dataloop\", got {json.dumps(document.get('shebang'))}")
    metadata = document.get("metadata")
    if not isinstance(metadata, dict):
        raise fail("metadata", "missing" if metadata is None else f"expected an object, got {_json_type(metadata)}")
    if metadata.get("dltype", "link") != "link":
        raise fail("metadata.dltype", f"expected \"link\", got {json.dumps(metadata.get('dltype'))}")
    info = metadata.get("linkInfo")
    if not isinstance(info, dict):
        raise fail("metadata.linkInfo", "missing" if info is None else f"expected an object, got {_json_type(info)}")
    if info.get("type") not in ("url", ID_LINK):
        raise fail("metadata.linkInfo.type",
                   f"expected \"url\" or \"id\", got {json.dumps(info.get('type'))}")
    if info["type"] == ID_LINK:
        ref = info.get("ref")
        if not isinstance(ref, str) or not ref.strip():
            raise fail("metadata.linkInfo.ref", "missing (the id of an item of this catalogue)")
    else:
        check_url(info.get("ref"), where="metadata.linkInfo.ref", source=source)
    mimetype = info.get("mimetype")
    if mimetype is not None and (not isinstance(mimetype, str) or not mimetype.strip()):
        raise fail("metadata.linkInfo.mimetype", f"expected a non-empty string, got {json.dumps(mimetype)}")
    result = dict(info)
    if info["type"] == ID_LINK:
        result["ref"] = info["ref"].strip()
        if mimetype is None:
            result.pop("mimetype", None)  # the target's, found when it is preprocessed
        return result
    result["mimetype"] = mimetype or url_mimetype(info["ref"])
    return result


def link_system(link_info: dict[str, Any]) -> dict[str, Any]:
    """What a linked item keeps in its `metadata.system`."""
    system = {"shebang": {"dltype": "link", "linkInfo": dict(link_info)}}
    if link_info.get("mimetype"):
        system["mimetype"] = link_info["mimetype"]
    return system


def item_link_info(item: dict[str, Any]) -> dict[str, Any] | None:
    """The linkInfo of a catalogue item (Catalogue.item_json), or None if it is not a link."""
    if item.get("type") != "link":
        return None
    return item["metadata"]["system"].get("shebang", {}).get("linkInfo")


def open_linked(item: dict[str, Any], fetcher: Fetcher) -> Fetched:
    """The linked binary of a link item, fetched under the [fetch] policy (refused addresses,
    size cap, timeouts, retries), for preprocessing; it is never written to storage.
    Close the result. Raises LinkError if the item is not a URL link, else FetchError."""
    return fetcher.fetch(_link_url(item))


def item_link_target(item: dict[str, Any]) -> str | None:
    """The item id an id link (linkInfo.type "id") points at, else None."""
    info = item_link_info(item)
    if info and info.get("type") == ID_LINK and isinstance(info.get("ref"), str):
        return info["ref"]
    return None


def _link_url(item: dict[str, Any]) -> str:
    info = item_link_info(item)
    if not info or info.get("type") != "url" or not isinstance(info.get("ref"), str):
        raise LinkError(f"{item.get('filename')}: not a URL link item")
    return info["ref"]


class LinkedSource:
    """A link item's binary as a byte source for preprocessing (the `ByteSource` shape of
    preprocess.pipeline: `name`, `size`, `open(offset, length)`).

    Fetched once, on the first `open`, through the safe fetcher, and held in a spooled
    temporary file until `close`: the binary is never written to storage. `name` is the
    URL's file name, for the hints a name gives (the item's own name is `<x>_link.json`)."""

    def __init__(self, item: dict[str, Any], fetcher: Fetcher):
        self.item, self.fetcher, self.url = item, fetcher, _link_url(item)
        self.name = posixpath.basename(unquote(urlsplit(self.url).path)) or item.get("name", "")
        self.size: int | None = None
        self._fetched: Fetched | None = None
        self._lock = threading.Lock()

    def open(self, offset: int = 0, length: int | None = None) -> BinaryIO:
        with self._lock:
            if self._fetched is None:
                self._fetched = self.fetcher.fetch(self.url)
                self.size = self._fetched.size
            body = self._fetched.body
            body.seek(offset)
            return io.BytesIO(body.read(-1 if length is None else length))

    def close(self) -> None:
        with self._lock:
            if self._fetched is not None:
                self._fetched.close()

    def __enter__(self) -> LinkedSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_links(driver: Driver, keys: Iterable[str]) -> dict[str, dict[str, Any] | None]:
    """Read small JSON files from storage: key -> linkInfo if the file is a link, else None.

    A file that cannot be read, or is not a link, maps to None; a file named `*_link.json`
    that is not a valid link is logged as a warning, naming the fault."""

    def read(key: str) -> tuple[str, dict[str, Any] | None]:
        try:
            data = driver.read(key, length=MAX_LINK_BYTES + 1)
        except DriverError as error:
            log.warning("%s: not read as a link file: %s", key, error)
            return key, None
        if len(data) > MAX_LINK_BYTES or b"shebang" not in data:
            return key, None
        try:
            return key, parse_link(data, source=key)
        except LinkError as error:
            if key.endswith(LINK_SUFFIX) or b'"link"' in data:
                log.warning("%s", error)
            return key, None

    keys = list(keys)
    if not keys:
        return {}
    with ThreadPoolExecutor(max_workers=min(READERS, len(keys))) as pool:
        return dict(pool.map(read, keys))


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}[type(value)]
