"""The one owner of the sync rules: a change in storage -> which jobs are queued or cancelled
(and why), and which artifacts get a cleanup job.

Every writer of the catalogue (the listing diff of `sync` and rescans, the daemon's event
applier and reaper, `put`/`rm`, imports and upload, the job runner) names the change it saw and
goes through `RULES`; the catalogue writes the consequence set-based, in the writer's
transaction, so an item and its jobs never disagree after a crash.

Identity (which item a file is) is decided before the rules, by the writers, with one rule:

- a **move** pairs a disappearance with an appearance of the same content (the same MD5, else
  the same size and etag) seen in the same listing diff, or, in the daemon, within
  `move_window_seconds`. An item that was already a ghost (missing) before is never the
  source of a move; it may still come back at its own path (revived). Where several
  candidates share the content, the one with the same name is preferred, then the one in
  the same folder, then the oldest item.
"""

from __future__ import annotations

from enum import StrEnum

from ..catalogue.jobs import (
    ALWAYS, CLEANUP, NEVER, PREPROCESS, SUPERSEDED, UNLESS_CURRENT, Consequence,
)


class Change(StrEnum):
    CREATED = "created"  # a path with no item: a new item
    CONTENT_CHANGED = "content-changed"  # the item's bytes changed (or a move changed them)
    MOVED = "moved"  # the item is now at another path, same content
    REVIVED = "revived"  # a missing item is back at its own path, same content
    MISSING = "missing"  # gone from storage, but may still turn out to be a move (daemon)
    GONE = "gone"  # gone for good: deleted (sync), removed (rm, prune), or reaped (daemon)
    MERGED = "merged"  # a copy that turned out to be another item moving: the copy's item goes


# `event`: the webhook event each change is (syncd.catalogue.outbox), emitted in the same
# transaction. An item's id survives a move, so item.moved carries the new path and the id.
RULES: dict[Change, Consequence] = {
    # A new or changed tar archive in a dataset with expand_archives is expanded into items
    # (an `expand` job); a moved or revived one is not expanded again.
    Change.CREATED: Consequence(preprocess=ALWAYS, event="item.created", expand=True),
    Change.CONTENT_CHANGED: Consequence(cancel=(PREPROCESS,), reason=SUPERSEDED, preprocess=ALWAYS,
                                        event="item.updated", expand=True),
    # The artifacts are named by item id, not path: a move keeps them. An item whose
    # artifacts were cleaned up (or whose preprocessing failed or was cancelled) is processed
    # again.
    Change.MOVED: Consequence(cancel=(CLEANUP,), reason="the item came back",
                              preprocess=UNLESS_CURRENT, event="item.moved"),
    Change.REVIVED: Consequence(cancel=(CLEANUP,), reason="the item came back",
                                preprocess=UNLESS_CURRENT, event="item.updated"),
    Change.MISSING: Consequence(cancel=(PREPROCESS,), reason="item deleted from storage",
                                event="item.deleted"),
    # Reported unless the item was already a ghost (reported when it went missing).
    Change.GONE: Consequence(cancel=(PREPROCESS,), reason="item deleted", cleanup=True,
                             event="item.deleted", event_present_only=True),
    Change.MERGED: Consequence(cancel=(PREPROCESS,), reason="merged into the item it was copied from",
                               cleanup=True, event="item.deleted"),
}

assert set(RULES) == set(Change), "every change has a rule"
assert all(c.preprocess in (ALWAYS, UNLESS_CURRENT, NEVER) for c in RULES.values())


def same_content(item, info) -> bool:
    """Whether an object's storage facts (size, etag, md5) are the item's: otherwise its
    content changed. The listing diff (syncd.catalogue.listing) compares the same columns."""
    return (item["size"], item["etag"], item["md5"]) == (info.size, info.etag, info.md5)


# -- a job whose file was not found ---------------------------------------------------------

def vanished(*, state: str | None, moved: bool) -> tuple[str, str | None, bool]:
    """What becomes of a job whose item's file was not found in storage, given the item as it
    is now: (state, reason, refund). "retry" runs it again at the item's current path (at
    once and without charging the attempt when the item moved meanwhile; after the usual
    backoff when the catalogue may not know yet of a move or delete, so that the event that
    says so is applied first); "cancelled" when the item is gone."""
    if state is None:
        return "cancelled", "item deleted", False
    if state != "present":
        return "cancelled", "item deleted from storage", False
    if moved:
        return "retry", None, True
    return "retry", None, False
