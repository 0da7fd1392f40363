"""Logging to stderr, as text for people or JSON Lines for log shippers."""

from __future__ import annotations

import json
import logging
import sys



class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        from .catalogue import now_iso  # not at import: `syncd --version` needs no catalogue

        data = {"time": now_iso(), "level": record.levelname.lower(), "logger": record.name,
                "message": record.getMessage()}
        for key in ("dataset", "item", "event", "job"):
            if hasattr(record, key):
                data[key] = getattr(record, key)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("syncd: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("botocore", "boto3", "urllib3", "azure", "google", "s3transfer"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
