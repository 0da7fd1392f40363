"""The catalogue: the only code that speaks SQL (schema, items, jobs, runs, staged listings)."""

from .store import Catalogue, Dataset, epoch_iso, normalize_filename, now_iso

__all__ = ["Catalogue", "Dataset", "epoch_iso", "normalize_filename", "now_iso"]
