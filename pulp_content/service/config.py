"""Settings from the environment, and the one function that configures Django."""

from __future__ import annotations

import contextlib
import copy
import math
import os
import re
import tomllib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_to_bytes, urlsplit

from pulp_content.service.errors import InvalidInput
from pulp_content.service.proxies import DEFAULT_TRUSTED_PROXIES, Network, parse_networks
from pulp_content.service.text import check_text
from pulp_content.service.urlspace import CONTENT_PREFIX, check_origin, check_prefix

DEFAULT_BIND = "127.0.0.1:24816"
# Where the CLI says content is when no origin is set: what `serve` listens on by default.
DEFAULT_ORIGIN = f"http://{DEFAULT_BIND}"


@dataclass(frozen=True)
class Listen:
    """Where the service listens: a TCP host and port, or a unix socket's path."""

    host: str = "127.0.0.1"
    port: int = 0
    path: str | None = None
    # A listening socket systemd passed (socket activation), used instead of the above.
    fd: int | None = None

    def __str__(self) -> str:
        """As `--bind` and gunicorn spell it."""
        if self.path is not None:
            return f"unix:{self.path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def describe(self, prefix: str) -> str:
        """Where a client finds content, for the line `serve` prints."""
        if self.fd is not None:
            return f"{prefix} on the socket systemd passed"
        if self.path is not None:
            return f"{prefix} on unix:{self.path}"
        return f"http://{self}{prefix}"


@dataclass(frozen=True)
class Settings:
    """Where the service keeps its data and how it serves it."""

    home: Path
    database_url: str
    # PULP_CONTENT_CONTENT_PATH_PREFIX: where the URL space begins; /livez, /readyz and
    # /metrics stay at the root beside it.
    content_prefix: str = CONTENT_PREFIX
    # PULP_CONTENT_CONTENT_ORIGIN, scheme://host[:port] as clients reach the service
    # (behind nginx: nginx's). None: redirects carry a path only, which the client
    # resolves against the URL it asked for; the CLI prints DEFAULT_ORIGIN.
    content_origin: str | None = None
    chunk_size: int = 256 * 1024
    # Seconds a remote artifact that failed is passed over while another one is there.
    failure_cooldown: float = 300.0
    # Seconds between a worker's writes of when artifacts were last served (one UPDATE
    # each time, never one per request; service.usage).
    last_used_interval: float = 60.0
    # Hand stored files to the front web server: None, "nginx" or "apache".
    delegate: str | None = None
    delegate_prefix: str = "/pulp/storage/"
    log_format: str = "plain"  # or "json": one object per access log line
    log_level: str = "info"  # debug, info, warning or error (the access log is info)
    # The Fernet key file that encrypts secrets at rest; None: keys/secret.key in home.
    secret_key_file: Path | None = None
    # Peers whose proxy headers (X-Client-Cert, X-Forwarded-For) are believed.
    trusted_proxies: tuple[Network, ...] = DEFAULT_TRUSTED_PROXIES
    # A client address with this many failed basic-auth attempts within the window (s)
    # is answered 429 until the oldest of them leaves it; 0 turns the limit off.
    auth_failure_limit: int = 5
    auth_failure_window: float = 60.0
    # Most connections one worker process holds to a PostgreSQL server: one for saves,
    # one for download claims, one for the cache's invalidation watcher, the rest for
    # the threads that resolve requests. A host holds at most workers x this many.
    database_connections: int = 6
    # Resolution cache bounds per worker (entries; 0 turns that cache off): answers, and
    # 404s apart, so distinct missing paths never push out what is served. A 404 takes
    # about 400 bytes: 50,000 keep a worker well under 150 MiB whatever clients ask for.
    cache_size: int = 100_000
    negative_cache_size: int = 50_000
    # Bytes of small stored files (up to 64 KiB each) kept in memory per worker, so a
    # warm request for one needs no thread hop; 0 turns it off.
    file_cache_size: int = 64 * 1024 * 1024
    # Never contact an upstream: pull-through and lazy content is served from what is
    # stored, however old; what is not stored is a 504 (`serve --offline`).
    offline: bool = False
    # Cache-Control max-age (seconds) for downstream caches and CDNs: files that do not
    # change at their URL (a publication's packages, immutable pull-through copies), and
    # what may (listings, a repository's latest version, metadata).
    immutable_max_age: int = 86_400
    short_max_age: int = 60
    # PULP_CONTENT_STORAGE_URL: where artifacts live, file:///path or s3://bucket[/prefix];
    # None: file://$PULP_CONTENT_HOME/storage. Downloads in progress stay local either way.
    storage_url: str | None = None
    # How an artifact stored on S3 is answered: "stream" (from the bucket, through this
    # service) or "presigned" (a 302 to a short-lived URL of the bucket).
    storage_redirect: str = "stream"
    # PULP_CONTENT_PEER_URL, scheme://host:port: where the other hosts reach this one to
    # read a download it runs (service.peers). None: `serve --bind` on a concrete address
    # gives it; with neither, other hosts download for themselves what this one does.
    peer_url: str | None = None

    @property
    def secret_key_path(self) -> Path:
        return self.secret_key_file or self.home / "keys" / "secret.key"

    @property
    def public_origin(self) -> str:
        """The origin the CLI prints URLs with."""
        return self.content_origin or DEFAULT_ORIGIN

    @property
    def storage_root(self) -> Path:
        """Where artifacts live on a filesystem storage; on S3, where downloads in
        progress (partial files, their locks and the journal of saves) are kept."""
        if self.storage_url is not None and self.storage_url.startswith("file:"):
            return Path(unquote_to_bytes(urlsplit(self.storage_url).path).decode())
        return self.home / "storage"

    @property
    def storage_shown(self) -> str:
        """Where artifacts live, as the lines `serve` prints say it."""
        return self.storage_url if self.storage_url and self.s3_location else str(self.storage_root)

    @property
    def s3_location(self) -> tuple[str, str] | None:
        """(bucket, key prefix) of an s3:// storage URL; None: storage is a filesystem."""
        if self.storage_url is None or not self.storage_url.startswith("s3://"):
            return None
        parts = urlsplit(self.storage_url)
        prefix = parts.path.strip("/")
        return parts.netloc, prefix + "/" if prefix else ""

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")


CONFIG_KEYS = (
    "home",
    "database_url",
    "content_origin",
    "content_path_prefix",
    "failure_cooldown",
    "last_used_interval",
    "delegate",
    "delegate_prefix",
    "log_format",
    "log_level",
    "secret_key_file",
    "trusted_proxies",
    "auth_failure_limit",
    "auth_failure_window",
    "database_connections",
    "cache_size",
    "negative_cache_size",
    "file_cache_size",
    "offline",
    "immutable_max_age",
    "short_max_age",
    "storage_url",
    "storage_redirect",
    "peer_url",
)
LOG_LEVELS = ("debug", "info", "warning", "error")
# A worker's saves, download claims and invalidation watcher have a connection each;
# resolving needs one more.
MIN_DATABASE_CONNECTIONS = 4
STORAGE_REDIRECTS = ("stream", "presigned")
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def apply_config_file(path: str, environ: MutableMapping[str, str]) -> None:
    """Read a TOML settings file into `environ` as PULP_CONTENT_* defaults: variables
    already set win, and every process started from here (workers) sees the same."""
    try:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    except OSError as exc:
        raise InvalidInput(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"cannot read config file {path}: it is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"cannot read config file {path}: {exc}") from None
    unknown = sorted(set(values) - set(CONFIG_KEYS))
    if unknown:
        raise InvalidInput(
            f"unknown keys in {path}: {', '.join(unknown)} (known: {', '.join(CONFIG_KEYS)})"
        )
    for key, value in values.items():
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            value = ",".join(value)  # trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]
        if not isinstance(value, str | int | float):
            raise InvalidInput(f"{path}: {key} must be a string or a number")
        check_text(str(value), f"{path}: {key}")
        environ.setdefault(f"PULP_CONTENT_{key.upper()}", str(value))


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Settings from PULP_CONTENT_* variables; no configuration at all is fine."""
    env = os.environ if environ is None else environ
    home_text = env.get("PULP_CONTENT_HOME") or "~/.local/share/pulp-content"
    try:
        home = Path(home_text).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise InvalidInput(f"cannot use {home_text!r} as PULP_CONTENT_HOME: {exc}") from None
    given_url = env.get("PULP_CONTENT_DATABASE_URL")
    if given_url:
        check_text(given_url, "PULP_CONTENT_DATABASE_URL")
    # Quoted: a home may hold '#', '?' or '%', or bytes that are not UTF-8.
    url = given_url or f"sqlite:///{quote(os.fsencode(home / 'db.sqlite3'))}"
    delegate = env.get("PULP_CONTENT_DELEGATE") or None
    if delegate not in (None, "nginx", "apache"):
        raise InvalidInput(f"PULP_CONTENT_DELEGATE must be nginx or apache, not {delegate!r}")
    prefix = env.get("PULP_CONTENT_DELEGATE_PREFIX") or "/pulp/storage/"
    log_format = env.get("PULP_CONTENT_LOG_FORMAT") or "plain"
    if log_format not in ("plain", "json"):
        raise InvalidInput(f"PULP_CONTENT_LOG_FORMAT must be plain or json, not {log_format!r}")
    log_level = (env.get("PULP_CONTENT_LOG_LEVEL") or "info").lower()
    if log_level not in LOG_LEVELS:
        raise InvalidInput(
            f"PULP_CONTENT_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {log_level!r}"
        )
    key_file = env.get("PULP_CONTENT_SECRET_KEY_FILE")
    proxies = env.get("PULP_CONTENT_TRUSTED_PROXIES")
    return Settings(
        home=home,
        database_url=url,
        content_prefix=content_prefix(env),
        content_origin=_content_origin(env),
        failure_cooldown=_count(env, "PULP_CONTENT_FAILURE_COOLDOWN", "300", float),
        last_used_interval=_count(env, "PULP_CONTENT_LAST_USED_INTERVAL", "60", float),
        delegate=delegate,
        delegate_prefix="/" + prefix.strip("/") + "/",
        log_format=log_format,
        log_level=log_level,
        secret_key_file=Path(key_file).expanduser().resolve() if key_file else None,
        trusted_proxies=DEFAULT_TRUSTED_PROXIES if proxies is None else parse_networks(proxies),
        auth_failure_limit=int(_count(env, "PULP_CONTENT_AUTH_FAILURE_LIMIT", "5", int)),
        auth_failure_window=_count(env, "PULP_CONTENT_AUTH_FAILURE_WINDOW", "60", float),
        database_connections=_connections(env),
        cache_size=int(_count(env, "PULP_CONTENT_CACHE_SIZE", "100000", int)),
        negative_cache_size=int(_count(env, "PULP_CONTENT_NEGATIVE_CACHE_SIZE", "50000", int)),
        file_cache_size=int(_count(env, "PULP_CONTENT_FILE_CACHE_SIZE", "67108864", int)),
        offline=_flag(env, "PULP_CONTENT_OFFLINE"),
        immutable_max_age=int(_count(env, "PULP_CONTENT_IMMUTABLE_MAX_AGE", "86400", int)),
        short_max_age=int(_count(env, "PULP_CONTENT_SHORT_MAX_AGE", "60", int)),
        storage_url=_storage_url(env),
        storage_redirect=_storage_redirect(env, delegate),
        peer_url=_peer_url(env),
    )


def _flag(env: Mapping[str, str], name: str) -> bool:
    """A yes/no setting: 1, true, yes or on (any case); 0, false, no, off or unset."""
    text = (env.get(name) or "0").strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InvalidInput(f"{name} must be true or false, not {text!r}")


def _storage_url(env: Mapping[str, str]) -> str | None:
    """PULP_CONTENT_STORAGE_URL, checked: file:///absolute/path or s3://bucket[/prefix]."""
    name = "PULP_CONTENT_STORAGE_URL"
    text = env.get(name)
    return check_storage_url(text, name) if text else None


def check_storage_url(text: str, name: str) -> str:
    """A storage URL (`name` says where it came from), or InvalidInput naming the forms."""
    check_text(text, name)
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise InvalidInput(f"{name} is not a URL: {exc}") from None
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise InvalidInput(f"{name} must be file:///absolute/path, not {text!r}")
        return text
    if parts.scheme == "s3":
        # S3's rule for bucket names: 3 to 63 lower-case letters, digits, dots, hyphens.
        if not BUCKET_NAME.fullmatch(parts.netloc) or parts.query or parts.fragment:
            raise InvalidInput(f"{name} must be s3://BUCKET[/PREFIX], not {text!r}")
        return text
    raise InvalidInput(f"{name} must be file:///path or s3://BUCKET[/PREFIX], not {text!r}")


def _storage_redirect(env: Mapping[str, str], delegate: str | None) -> str:
    name = "PULP_CONTENT_STORAGE_REDIRECT"
    mode = env.get(name) or "stream"
    if mode not in STORAGE_REDIRECTS:
        raise InvalidInput(f"{name} must be stream or presigned, not {mode!r}")
    if delegate is not None and (env.get("PULP_CONTENT_STORAGE_URL") or "").startswith("s3:"):
        # The front web server reads files from a disk; S3 storage has none to give it.
        raise InvalidInput(
            "PULP_CONTENT_DELEGATE cannot be used with S3 storage (PULP_CONTENT_STORAGE_URL "
            "s3://...): the web server has no file to send; use PULP_CONTENT_STORAGE_REDIRECT"
        )
    return mode


def _peer_url(env: Mapping[str, str]) -> str | None:
    name = "PULP_CONTENT_PEER_URL"
    text = env.get(name)
    return check_origin(text, name) if text else None


def _connections(env: Mapping[str, str]) -> int:
    name = "PULP_CONTENT_DATABASE_CONNECTIONS"
    count = int(_count(env, name, "6", int))
    if count < MIN_DATABASE_CONNECTIONS:
        raise InvalidInput(
            f"{name} must be at least {MIN_DATABASE_CONNECTIONS} (saves, download claims, "
            f"the cache's invalidation and one to resolve requests), not {count}"
        )
    return count


def content_prefix(env: Mapping[str, str]) -> str:
    """PULP_CONTENT_CONTENT_PATH_PREFIX, checked (the bench asks its servers under it)."""
    name = "PULP_CONTENT_CONTENT_PATH_PREFIX"
    return check_prefix(env.get(name) or CONTENT_PREFIX, name)


def _content_origin(env: Mapping[str, str]) -> str | None:
    name = "PULP_CONTENT_CONTENT_ORIGIN"
    text = env.get(name)
    return check_origin(text, name) if text else None


def _count(env: Mapping[str, str], name: str, default: str, kind: type[float]) -> float:
    """A finite, non-negative number from the environment, or a one-line error naming it
    (`nan` and `inf` parse as floats, and would make every comparison with them false)."""
    text = env.get(name) or default
    try:
        value = kind(text)
    except ValueError:
        raise InvalidInput(f"{name} must be a non-negative number, not {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(f"{name} must be a non-negative number, not {text!r}")
    return value


def sqlite_path(url: str) -> Path:
    """The file of a `sqlite:///path` URL (percent-encoded as needed)."""
    path = unquote_to_bytes(urlsplit(url).path)
    if path in (b"", b"/"):
        raise InvalidInput(f"invalid database URL {url!r}: no file path")
    # sqlite:////abs/path has the path //abs/path; one leading slash is the same file.
    return Path(os.fsdecode(b"/" + path.lstrip(b"/")))


def database_settings(url: str) -> dict[str, object]:
    """A Django DATABASES entry from `postgres://user:pw@host:port/db` or `sqlite:///path`."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # no URL in the message: it may hold a password
        raise InvalidInput(f"invalid database URL: {exc}") from None
    if parts.scheme == "sqlite":
        path = quote(os.fsencode(sqlite_path(url)))
        return {
            "ENGINE": "django.db.backends.sqlite3",
            # mode=rw: a connection never creates the file; only `migrate` does (see
            # service.database), so nobody silently starts over on a new, empty one.
            "NAME": f"file:{path}?mode=rw",
            # Kept, as on PostgreSQL (a broken one is replaced: database.unit_of_work).
            # Opening one costs more than the statements a request runs on it (the
            # file, the pragmas below): each thread keeps its own.
            "CONN_MAX_AGE": None,
            # WAL lets the service read while a CLI command writes; IMMEDIATE avoids
            # the deadlock-prone upgrade of a read transaction to a write one.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    if parts.scheme in ("postgres", "postgresql"):
        return _postgres_settings(url)
    raise InvalidInput(f"invalid database URL {url!r}: use postgres://... or sqlite:///...")


def _postgres_settings(url: str) -> dict[str, object]:
    """dj-database-url's reading of a postgres:// URL: every query option (`sslmode`,
    `sslrootcert`, `options`, ...) reaches libpq; a host may be a socket directory
    (`postgres://user@%2Frun%2Fpostgresql/db`)."""
    import dj_database_url

    try:
        # CONN_MAX_AGE None: kept; a broken one is replaced (database.unit_of_work).
        entry: dict[str, object] = dict(dj_database_url.parse(url, conn_max_age=None))
    except ValueError as exc:
        raise InvalidInput(f"invalid database URL: {exc}") from None
    entry["NAME"] = entry["NAME"] or "postgres"
    entry["PORT"] = str(entry["PORT"] or "")
    options = entry.get("OPTIONS") or {}
    assert isinstance(options, dict)
    # What the URL says wins. A server that drops packets is an outage (503) in seconds,
    # not minutes; pg_stat_activity shows whose connections these are.
    entry["OPTIONS"] = {"connect_timeout": 5, "application_name": "pulp-content", **options}
    return entry


def connect_params(url: str) -> dict[str, object]:
    """psycopg2.connect() keywords for a postgres:// URL, its options included (but
    application_name: whoever connects names the connection)."""
    params = database_settings(url)
    options = params["OPTIONS"]
    assert isinstance(options, dict)
    return {
        "dbname": params["NAME"],
        "user": params["USER"],
        "password": params["PASSWORD"],
        "host": params["HOST"],
        "port": params["PORT"] or 5432,
        **{key: value for key, value in options.items() if key != "application_name"},
    }


class ConfigurationError(RuntimeError):
    """Django was configured already, with other settings: a programming error."""


# What this process configured Django with (None: not yet). Set once, never patched.
_configured: list[dict[str, object]] = []


def configure_django(settings: Settings, **extra: object) -> None:
    """Configure Django from `settings`: once per process, at the entry point, before
    anything imports the models. A second call with the same database is a no-op; with
    other settings it raises, since Django cannot be configured twice.

    `extra` adds Django settings (the legacy WSGI content app adds its URLconf)."""
    import django
    from django.conf import settings as dj

    from pulp_content.service import queries

    database: dict[str, Any] = database_settings(settings.database_url)
    # Count every statement the connections send (transaction control included).
    options = queries.database_options(settings.is_sqlite)
    database["OPTIONS"] = {**database.get("OPTIONS", {}), **options}
    wanted: dict[str, object] = {"DATABASES": database, **extra}
    if _configured:
        if _configured[0] != wanted:
            raise ConfigurationError(
                "Django is configured already, with other settings: configure it once, "
                "at the entry point"
            )
        return
    if dj.configured:
        raise ConfigurationError("Django was configured outside configure_django")
    if settings.is_sqlite:
        tighten_sqlite(sqlite_path(settings.database_url))
    dj.configure(
        INSTALLED_APPS=["pulp_content.service"],
        # A copy: Django fills in defaults in place, and `wanted` must stay as asked.
        DATABASES={"default": copy.deepcopy(wanted["DATABASES"])},
        PULP_CONTENT_SECRET_KEY_FILE=str(settings.secret_key_path),
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
        TIME_ZONE="UTC",
        SECRET_KEY="pulp-content-has-no-sessions",
        LOGGING_CONFIG=None,
        **extra,
    )
    django.setup()
    _configured.append(wanted)
    queries.install()


def private_dir(path: Path) -> None:
    """Create a directory (and its missing parents) readable by its owner only; an
    existing one keeps its mode (a front web server may have been given access)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def tighten_sqlite(path: Path) -> None:
    """An existing SQLite file made 0600 (SQLite gives its -wal and -shm files the
    database file's mode): it holds password hashes and encrypted secrets. Only
    `database.migrate` creates the file, 0600 from the start."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return  # missing or unreadable: opening the database reports it, with the path
    try:
        if os.fstat(fd).st_mode & 0o077:
            with contextlib.suppress(PermissionError):  # someone else's file: theirs to mind
                os.fchmod(fd, 0o600)  # made by an earlier version, world-readable
    finally:
        os.close(fd)
