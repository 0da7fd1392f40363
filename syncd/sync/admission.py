"""Upload controls for files that arrive on their own (bucket events, a watched folder, a sync
or rescan): sampling and quotas decide, once per path, whether a new file gets an item.

- Sampling is deterministic per path: a file is kept when a hash of the seed
  (`sample_seed`, 0 when unset) and its filename falls under `sample_percent`, so every
  host, every rescan and the daemon decide the same.
- Quotas count the dataset's items created in the trailing minute, hour or day, whichever
  way (uploads, imports, arrivals), from the catalogue: they hold across restarts and
  processes. Past one, the rest of a listing's new files (in filename order) or of the
  events' are refused.
- A refusal is remembered in the catalogue (syncd.catalogue.arrivals) with the content it was
  decided for: the next rescan leaves the path alone (`still_refused`), a content change
  decides again, `syncd items admit` admits. Nothing is deleted from storage, and arrivals
  are never resized or re-encoded (the user's own bytes).

The writers (the listing diff in syncd.sync.indexer, the event applier) call in here before
they create items; the remembered refusals are honoured even when the dataset has no
controls any more (admit them with `syncd items admit DATASET --all`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..catalogue import Catalogue, Dataset, arrivals, now_iso
from ..catalogue.listing import Plan, Scope, StagedListing

WINDOWS = {"quota_per_minute": timedelta(minutes=1), "quota_per_hour": timedelta(hours=1),
           "quota_per_day": timedelta(days=1)}
SAMPLE = 20  # refused paths remembered for --dry-run and logs


@dataclass(frozen=True)
class Admission:
    """A dataset's controls for arrivals: which new paths get an item."""

    percent: float = 100.0
    seed: int = 0
    quotas: tuple[tuple[str, int], ...] = ()  # (quota_per_..., limit)

    @classmethod
    def of(cls, settings: Any) -> Admission | None:
        """From a dataset's [datasets.upload] (syncd.config.UploadControls); None when
        nothing is decided for arrivals."""
        if not settings.arrivals:
            return None
        quotas = tuple((key, getattr(settings, key)) for key in WINDOWS
                       if getattr(settings, key) is not None)
        if settings.sample_percent >= 100 and not quotas:
            return None
        seed = settings.sample_seed if settings.sample_seed is not None else 0
        return cls(settings.sample_percent, seed, quotas)

    def sampled_out(self, filename: str) -> bool:
        if self.percent >= 100:
            return False
        digest = hashlib.sha256(f"{self.seed}:{filename}".encode()).digest()
        return int.from_bytes(digest[:8], "big") * 100.0 / 2**64 >= self.percent

    def room(self, catalogue: Catalogue, dataset: Dataset, *,
             now: datetime | None = None) -> tuple[int, str] | None:
        """(new items the tightest quota still allows, its refusal reason); None without quotas."""
        if not self.quotas:
            return None
        now = now or datetime.now(UTC)
        since = [(now - WINDOWS[key]).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                 for key, _ in self.quotas]
        used = arrivals.created_since(catalogue, dataset, since)
        return min((limit - count, arrivals.QUOTA_REASONS[key])
                   for (key, limit), count in zip(self.quotas, used, strict=True))

    def decide(self, catalogue: Catalogue, dataset: Dataset, filename: str) -> str | None:
        """The reason `filename` gets no item, or None to admit it (one path: an event)."""
        if self.sampled_out(filename):
            return arrivals.SAMPLED_OUT
        room = self.room(catalogue, dataset)
        if room is not None and room[0] <= 0:
            return room[1]
        return None


# -- one path: the event applier, inside its transaction ------------------------------------

def refused_arrival(catalogue: Catalogue, dataset: Dataset, filename: str, info,
                    admission: Admission | None) -> str | None:
    """For a file that arrived at `filename` with no item: the reason it gets none (remembered
    with its content), or None to create its item (an older refusal forgotten)."""
    known = arrivals.find(catalogue, dataset, filename)
    if known is not None and (known["size"], known["etag"], known["md5"]) == (info.size, info.etag, info.md5):
        return known["reason"]
    reason = admission.decide(catalogue, dataset, filename) if admission is not None else None
    if reason is None:
        if known is not None:
            arrivals.forget(catalogue, dataset, [filename])
        return None
    arrivals.refuse(catalogue, dataset, filename, reason, size=info.size, etag=info.etag,
                    md5=info.md5, at=now_iso())
    return reason


def forget_refusal(catalogue: Catalogue, dataset: Dataset, filename: str) -> None:
    """A path with no item left storage, or gets an item another way: its refusal, if any,
    goes."""
    arrivals.forget(catalogue, dataset, [filename])


# -- a sync's listing ---------------------------------------------------------------------

@dataclass
class Held:
    """The listed paths a sync leaves without an item."""

    kept: int = 0  # refused before with the same content: left alone
    new: dict[str, int] = field(default_factory=dict)  # reason -> paths refused now
    samples: list[str] = field(default_factory=list)  # the first paths refused now
    known: bool = False  # the scope had refusals before this listing

    @property
    def total(self) -> int:
        return self.kept + sum(self.new.values())


def hold_listing(catalogue: Catalogue, staged: StagedListing, plan: Plan, dataset: Dataset,
                 scope: Scope, admission: Admission | None) -> Held | None:
    """Decide, set-based, which of the listing's new paths get no item (temp table held), before
    the plan is applied; None when the dataset has no controls and no remembered refusal."""
    known = arrivals.any_in_scope(catalogue, dataset, scope.low, scope.high)
    if admission is None and not known:
        return None
    fresh = staged.fresh_rows(plan, held=False)
    arrivals.start_holding(catalogue)
    staged.holding = True
    if known:
        arrivals.hold_known(catalogue, dataset, fresh)
    if admission is not None and admission.percent < 100:
        after = 0
        with catalogue.transaction():  # temp tables only: no write lock on the catalogue
            while page := arrivals.candidates(catalogue, fresh, after=after):
                arrivals.hold(catalogue, ((n, arrivals.SAMPLED_OUT) for n, path in page
                                          if admission.sampled_out(path)))
                after = page[-1][0]
    if admission is not None:
        room = admission.room(catalogue, dataset)
        if room is not None:
            arrivals.hold_beyond(catalogue, fresh, max(room[0], 0), room[1])
    kept, new = arrivals.held_counts(catalogue)
    return Held(kept, new, arrivals.held_paths(catalogue, SAMPLE), known)


def record_listing(catalogue: Catalogue, staged: StagedListing, plan: Plan, dataset: Dataset,
                   scope: Scope, held: Held, *, complete: bool) -> None:
    """Remember the listing's new refusals; forget those of paths admitted, moved onto, or
    (for a `complete` listing, not an inventory) gone from storage. Before the plan is
    applied: a crash in between decides the admitted ones again."""
    if not held.known:  # nothing to forget: only new refusals to write
        arrivals.record(catalogue, dataset, admitted=None, low=scope.low, high=scope.high,
                        at=now_iso(), unlisted=False)
        return
    arrivals.record(catalogue, dataset, admitted=staged.admitted_paths(plan), low=scope.low,
                    high=scope.high, at=now_iso(), unlisted=complete)
