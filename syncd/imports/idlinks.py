"""Id links: a linked item that points at another item of the same catalogue by its id
(`linkInfo = {"type": "id", "ref": "<item id>"}`, as the reference SDK writes links to items).

Such a link is accepted by imports only when its id is a file item of this catalogue that is
present in storage; otherwise the file or row that carries it fails alone, naming the id. A
link item of this kind is preprocessed from the target item's bytes, read through the target
dataset's driver (ranged reads, nothing copied); its artifacts are the link item's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..catalogue import Catalogue, items
from ..errors import NotFoundError
from .links import LinkError


@dataclass(frozen=True)
class LinkTarget:
    """Where an id link's bytes are: the target item's dataset, key and size."""

    item_id: str
    dataset: str
    key: str
    size: int | None


def link_target(catalogue: Catalogue, ref: str, *, where: str) -> LinkTarget:
    """The item `ref` names, if it is a present file item of this catalogue; else LinkError
    naming `where` (the file or row) and the id."""

    def fail(what: str) -> LinkError:
        return LinkError(f"{where}: metadata.linkInfo.ref: {ref!r} {what}")

    try:
        pk = catalogue.item_pk(ref)
    except NotFoundError:
        raise fail("is not an item id of this catalogue") from None
    row = catalogue.item_row_by_pk(pk)
    if row is None:
        raise fail("is not an item of this catalogue")
    if row["state"] != "present":
        raise fail(f"names {row['filename']}, which is gone from storage")
    if row["type"] == "link":
        raise fail(f"names {row['filename']}, itself a link (an id link points at a file)")
    dataset = items.dataset_by_id(catalogue, row["dataset_id"])
    return LinkTarget(ref, dataset.name, row["filename"].lstrip("/"), row["size"])
