"""syncd: keeps a SQLite catalogue of storage buckets current and preprocesses new images."""

__version__ = "0.1.0"
