"""Preprocessing: pure functions from bytes or a stream to metadata and artifacts."""
