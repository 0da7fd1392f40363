"""Config: a TOML file validated at startup, each error naming the file and the bad key.

Found from `--config PATH`, else `$SYNCD_CONFIG`, else `./syncd.toml`. Any string value may
contain `${VAR}`, replaced by the environment variable VAR (an error names it if unset).
Relative paths are relative to the config file's folder, so the daemon finds the same files
whatever its working directory.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from drivers import KINDS, DriverOptions, options_model
from drivers.options import InvalidOptions, Meta, Options, Secret, convert, field
from preprocess import DEFAULT_MAX_PIXELS

from .service.daemon_config import DaemonConfig, SourceConfig
from .service.web_config import WebConfig
from .errors import ConfigError, NotConfiguredError
from .sync.filters import FilterError, PathFilter, glob_to_regex, parse_filter_line

DEFAULT_FILE = "syncd.toml"
ENV_VAR = "SYNCD_CONFIG"
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
DEFAULT_CATALOGUE = Path("data/catalogue.db")


class CatalogueConfig(Options, kw_only=True):
    path: Path | None = None  # a SQLite file: the embedded default (data/catalogue.db)
    # A PostgreSQL catalogue shared by many hosts: postgresql://user@host/db (the password
    # from "${VAR}" in the URL, or libpq's PGPASSWORD / ~/.pgpass); never shown or logged.
    url: Secret | None = None

    def __post_init__(self) -> None:
        if self.url is None:
            if self.path is None:
                self._set("path", DEFAULT_CATALOGUE)
            return
        if self.path is not None:
            raise ValueError("set path (a SQLite file) or url (PostgreSQL), not both")
        scheme = self.url.get_secret_value().partition("://")[0]
        if scheme not in ("postgresql", "postgres"):
            raise ValueError(f"url: must be a postgresql:// URL (the scheme is {scheme!r}); a "
                             "SQLite catalogue is set with path")

    @property
    def location(self) -> str | Path:
        """What syncd.catalogue.Catalogue opens: the URL, else the SQLite file."""
        return self.url.get_secret_value() if self.url is not None else self.path


class PreprocessorConfig(Options, kw_only=True):
    """A custom function run on the dataset's new items after the built-in preprocessing."""

    function: Annotated[str, Meta(pattern=r"^[\w.]+:[\w.]+$")] | None = None  # "package.module:function"
    entry_point: str | None = None  # a name in the `syncd.preprocessors` entry-point group
    mimetypes: tuple[str, ...] = ("*",)  # patterns (fnmatch) the item's mimetype must match
    key: Annotated[str, Meta(min_length=1)] = "user"  # "user": merged into metadata.user; else metadata.user[key]
    input: Literal["bytes", "source"] = "bytes"  # the file's bytes, or its ranged byte source

    def __post_init__(self) -> None:
        if (self.function is None) == (self.entry_point is None):
            raise ValueError("give exactly one of function or entry_point")

    @property
    def target(self) -> str:
        return self.function or f"entry point {self.entry_point!r}"


class FilterRules(Options, kw_only=True):
    """Which keys become items (syncd.sync.filters): in a [[drivers]] or [[datasets]] table."""

    include: tuple[str, ...] = ()  # if any: keys none of them matches are excluded
    exclude: tuple[str, ...] = ()
    filters: tuple[str, ...] = ()  # rclone --filter lines, in order: "- *.tmp", "+ *.jpg"
    default_excludes: bool | None = None  # in-progress and temp files; None: the driver's, else on

    def __post_init__(self) -> None:
        for key in ("include", "exclude", "filters"):
            for index, line in enumerate(getattr(self, key)):
                try:
                    glob_to_regex(parse_filter_line(line)[1] if key == "filters" else line)
                except FilterError as error:
                    what = "" if key == "filters" else "bad pattern: "
                    raise ValueError(f"{key}[{index}]: {what}{error}") from None

    def table(self) -> dict:
        return {"include": self.include, "exclude": self.exclude, "filters": self.filters}


FILTER_KEYS = FilterRules.keys()


class UploadControls(Options, kw_only=True):
    """[datasets.upload]: what `upload` and the imports do to each file (syncd.imports.controls)."""

    sample_percent: Annotated[float, Meta(gt=0, le=100)] = 100.0  # chance each file or row is kept
    sample_seed: int | None = None  # repeatable sampling; else a seed is drawn and reported
    quota_per_minute: Annotated[int, Meta(ge=0)] | None = None  # items created in the window, any way
    quota_per_hour: Annotated[int, Meta(ge=0)] | None = None
    quota_per_day: Annotated[int, Meta(ge=0)] | None = None
    max_size: Annotated[int, Meta(ge=16)] | None = None  # pixels, longest side; aspect kept
    jpeg_quality: Annotated[int, Meta(ge=1, le=100)] | None = None  # JPEGs re-encoded
    batch_prefix: Annotated[str, Meta(min_length=1)] | None = None  # metadata.user.batch
    batch_every: Literal["never", "daily", "weekly", "monthly"] = "never"
    tags: tuple[str, ...] = ()  # metadata.user.tags
    # sampling and quotas also decide which files that arrive on their own get an item
    # (syncd.sync.admission); tags and batch are recorded on arrivals either way
    arrivals: bool = True


class DatasetConfig(FilterRules, kw_only=True):
    name: Annotated[str, Meta(min_length=1)]
    upload: UploadControls = field(default_factory=UploadControls)
    driver: str
    preprocessors: tuple[PreprocessorConfig, ...] = ()
    rescan_interval_seconds: Annotated[float, Meta(ge=0)] | None = None  # else [daemon]'s
    expand_archives: bool = False  # tar archives arriving in the dataset are expanded into items


WEBHOOK_EVENTS = ("sync.finished", "item.created", "item.updated", "item.moved", "item.deleted",
                  "job.done", "job.failed")


class WebhookConfig(Options, kw_only=True):
    """[[webhooks]]: events POSTed to a URL (syncd.service.webhooks)."""

    name: Annotated[str, Meta(min_length=1)]
    url: Annotated[str, Meta(pattern=r"^https?://")]
    events: tuple[Literal[WEBHOOK_EVENTS], ...] = WEBHOOK_EVENTS  # type: ignore[valid-type]
    secret: Secret | None = None  # HMAC-SHA256 key, at least 16 characters
    max_attempts: Annotated[int, Meta(ge=1)] = 10  # tries before an event is a dead letter
    retry_seconds: Annotated[float, Meta(gt=0)] = 5.0  # first wait after a failed try; doubles
    timeout_seconds: Annotated[float, Meta(gt=0)] = 10.0  # connect, and the receiver's answer
    batch_size: Annotated[int, Meta(ge=1, le=10_000)] = 100  # events in one POST

    def __post_init__(self) -> None:
        if self.secret is not None and len(self.secret.get_secret_value()) < 16:
            raise ValueError("secret: at least 16 characters")


class FetchConfig(Options, kw_only=True):
    allow_hosts: tuple[str, ...] = ()  # hosts allowed even if loopback or private
    max_bytes: Annotated[int, Meta(gt=0)] = 100 * 1024 * 1024
    timeout_seconds: Annotated[float, Meta(gt=0)] = 30.0


class SyncConfig(Options, kw_only=True):
    max_delete_percent: Annotated[float, Meta(ge=0, le=100)] = 100.0  # refuse larger deletes


class PreprocessConfig(Options, kw_only=True):
    enabled: bool = True  # `syncd sync` runs new items' jobs after syncing
    thumbnails: bool = True  # off: header-only reads, no thumbnail
    thumbnail_size: Annotated[int, Meta(ge=16, le=4096)] = 256  # pixels, longest side
    thumbnail_format: Literal["jpeg", "webp"] = "jpeg"
    thumbnail_quality: Annotated[int, Meta(ge=1, le=100)] = 85
    max_pixels: Annotated[int, Meta(gt=0)] = DEFAULT_MAX_PIXELS  # larger images fail (bombs)
    head_bytes: Annotated[int, Meta(ge=1024)] = 64 * 1024  # first ranged read of each file
    # Most memory one job's image decode may take (MB, estimated from the header before
    # decoding, at the reduced scale JPEGs allow); a larger image gets its metadata, no thumbnail.
    memory_mb: Annotated[int, Meta(ge=16)] = 512
    video_preview: bool = False  # videos: also a 360p H.264 MP4 under .dataloop/previews/
    workers: Annotated[int, Meta(ge=0)] | None = None  # processes; default: CPU count; 0: in-process
    # Run the tasks on a Dask distributed cluster instead ("dask://HOST:PORT"); None: local pool.
    executor: Annotated[str, Meta(pattern=r"^dask(\+tls)?://\S+$")] | None = None
    max_attempts: Annotated[int, Meta(ge=1)] = 3  # tries before a job is failed (crashes, storage errors)
    lease_seconds: Annotated[float, Meta(gt=0)] = 60.0  # a silent runner's jobs are retaken after this
    retry_delay_seconds: Annotated[float, Meta(ge=0)] = 5.0  # first backoff after a storage error


class Config(Options, kw_only=True):
    source: Path | None = None
    catalogue: CatalogueConfig = field(default_factory=CatalogueConfig)
    drivers: tuple[DriverOptions, ...] = ()
    datasets: tuple[DatasetConfig, ...] = ()
    fetch: FetchConfig = field(default_factory=FetchConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    web: WebConfig = field(default_factory=WebConfig)
    sources: tuple[SourceConfig, ...] = ()
    driver_filters: dict[str, FilterRules] = field(default_factory=dict)  # the filter keys of each [[drivers]] table
    webhooks: tuple[WebhookConfig, ...] = ()

    def check_references(self) -> None:
        """Names unique, and every name a dataset or source refers to configured."""
        _unique("drivers", [d.name for d in self.drivers])
        _unique("datasets", [d.name for d in self.datasets])
        _unique("webhooks", [w.name for w in self.webhooks])
        names = {d.name for d in self.drivers}
        for index, dataset in enumerate(self.datasets):
            if dataset.driver not in names:
                raise ValueError(
                    f"datasets[{index}].driver: no driver named {dataset.driver!r}"
                    f" (drivers: {', '.join(sorted(names)) or 'none'})"
                )
        kinds = {d.name: d.kind for d in self.drivers}
        for index, source in enumerate(self.sources):
            if source.kind == "watch" and kinds.get(source.driver) != "local":
                raise ValueError(
                    f"sources[{index}].driver: {source.driver!r} is not a local driver"
                    f" (local drivers: {', '.join(n for n, k in kinds.items() if k == 'local') or 'none'})"
                )

    def hook_token(self) -> str | None:
        """`[daemon] hook_token`, its "${VAR}" read now: only the daemon asks for it, so
        other commands work without VAR set."""
        token = self.daemon.hook_token
        if token is None or not token.get_secret_value():
            return None
        return expand_env(token.get_secret_value(), self.source, "daemon.hook_token")

    def web_token(self) -> str | None:
        """`[web] token`, else `[daemon] hook_token`, its "${VAR}" read now (only the web
        service asks for it)."""
        token = self.web.token
        if token is None or not token.get_secret_value():
            return self.hook_token()
        return expand_env(token.get_secret_value(), self.source, "web.token")

    def driver(self, name: str) -> DriverOptions:
        for options in self.drivers:
            if options.name == name:
                return options
        known = ", ".join(d.name for d in self.drivers) or "none"
        raise NotConfiguredError(f"{self.source}: no driver named {name!r} (drivers: {known})")

    def path_filter(self, dataset: str) -> PathFilter:
        """The rules a key of `dataset` must pass: default excludes, driver's, dataset's."""
        config = self.dataset(dataset)
        driver = self.driver_filters.get(config.driver, FilterRules())
        defaults = config.default_excludes
        if defaults is None:
            defaults = driver.default_excludes is not False
        return PathFilter.build(defaults=defaults, tables=[
            (f"driver {config.driver}", driver.table()), (f"dataset {config.name}", config.table())])

    def dataset(self, name: str) -> DatasetConfig:
        for dataset in self.datasets:
            if dataset.name == name:
                return dataset
        known = ", ".join(d.name for d in self.datasets) or "none"
        raise NotConfiguredError(f"{self.source}: no dataset named {name!r} (datasets: {known})")


def _unique(section: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{section}: the name {name!r} is used twice")
        seen.add(name)


def find_config_file(path: str | os.PathLike[str] | None = None) -> Path:
    if path:
        return Path(path)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return Path(DEFAULT_FILE)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    file = find_config_file(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = "" if path or os.environ.get(ENV_VAR) else (
            f" (pass --config PATH, set ${ENV_VAR}, or copy config.example.toml to {DEFAULT_FILE})"
        )
        raise ConfigError(f"config file {file} not found{hint}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{file}: cannot read: {error}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{file}: not valid TOML: {error}") from None
    return parse_config(raw, source=file)


def parse_config(raw: dict[str, Any], *, source: Path) -> Config:
    """Validate a parsed TOML document. Raises ConfigError naming `source` and the key."""
    raw = _expand(raw, source, "")
    base = source.parent
    try:
        if "source" in raw:
            raise _KeyError("source", "unknown key")
        driver_tables = raw.get("drivers", [])
        if not isinstance(driver_tables, list):
            raise _KeyError("drivers", "must be an array of tables: [[drivers]]")
        driver_filters = {}
        driver_options = [_driver(index, table, base, driver_filters)
                          for index, table in enumerate(driver_tables)]
        if "driver_filters" in raw:
            raise _KeyError("driver_filters", "unknown key")
        # The drivers are validated above, each by its kind's class: passed in afterwards.
        config = convert({**raw, "drivers": ()}, Config).replace(
            drivers=tuple(driver_options), source=source, driver_filters=driver_filters)
        config.check_references()
    except _KeyError as error:
        raise ConfigError(f"{source}: {error.key}: {error.message}") from None
    except ValueError as error:  # InvalidOptions too
        raise ConfigError(f"{source}: {error}") from None
    path = config.catalogue.path
    if config.catalogue.url is None and not path.is_absolute() and str(path) != ":memory:":
        config = config.replace(catalogue=config.catalogue.replace(path=base / path))
    return config


class _KeyError(Exception):
    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


def _driver(index: int, table: Any, base: Path, filters: dict[str, FilterRules]) -> DriverOptions:
    where = f"drivers[{index}]"
    if not isinstance(table, dict):
        raise _KeyError(where, "must be a table")
    if "name" in table:
        where += f" ({table['name']!r})"
    # The filter keys are syncd's, not the driver's: drivers never see them.
    rules = {key: table[key] for key in FILTER_KEYS if key in table}
    table = {key: value for key, value in table.items() if key not in FILTER_KEYS}
    try:
        filters[str(table.get("name"))] = convert(rules, FilterRules)
    except InvalidOptions as error:
        raise _KeyError(where, str(error)) from None
    kind = table.get("kind")
    if kind is None:
        raise _KeyError(f"{where}.kind", f"missing (one of: {', '.join(KINDS)})")
    if kind not in KINDS:
        raise _KeyError(f"{where}.kind", f"unknown kind {kind!r} (one of: {', '.join(KINDS)})")
    try:
        options = convert(table, options_model(kind))
    except InvalidOptions as error:
        raise _KeyError(where, str(error)) from None
    root = getattr(options, "root", None)
    if isinstance(root, Path) and not root.is_absolute():
        options = options.replace(root=base / root)
    return options


# Values only the daemon uses, read from the environment when the daemon starts, so that
# other commands work without the variable set (see DaemonConfig.hook_token).
DEFERRED = frozenset({"daemon.hook_token", "web.token"})


def expand_env(text: str, source: Path | None, key: str) -> str:
    """`text` with each `${VAR}` replaced by the environment variable VAR; an unset one is a
    ConfigError naming the file, the key and the variable."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"{source}: {key}: environment variable {name} is not set")
        return os.environ[name]

    return _REFERENCE.sub(replace, text)


def _expand(value: Any, source: Path, key: str) -> Any:
    if isinstance(value, str):
        return value if key in DEFERRED else expand_env(value, source, key)
    if isinstance(value, dict):
        return {k: _expand(v, source, f"{key}.{k}" if key else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    return value
