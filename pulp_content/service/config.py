"""Settings from the environment, and the one function that configures Django."""

from __future__ import annotations

import os
import tomllib
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pulp_content.service.errors import InvalidInput
from pulp_content.service.storage import FileSystemStorage

DEFAULT_BIND = "127.0.0.1:24816"
CONTENT_PREFIX = "/pulp/content/"


@dataclass(frozen=True)
class Settings:
    """Where the service keeps its data and how it serves it."""

    home: Path
    database_url: str
    content_prefix: str = CONTENT_PREFIX
    chunk_size: int = 256 * 1024
    # Seconds a remote artifact that failed is passed over while another one is there.
    failure_cooldown: float = 300.0
    # Hand stored files to the front web server: None, "nginx" or "apache".
    delegate: str | None = None
    delegate_prefix: str = "/pulp/storage/"
    log_format: str = "plain"  # or "json": one object per access log line
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def storage_root(self) -> Path:
        return self.home / "storage"

    def storage(self) -> FileSystemStorage:
        from pulp_content.service.locks import locks_for

        return FileSystemStorage(self.storage_root, locks_for(self.database_url))

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")


CONFIG_KEYS = (
    "home",
    "database_url",
    "failure_cooldown",
    "delegate",
    "delegate_prefix",
    "log_format",
)


def apply_config_file(path: str, environ: MutableMapping[str, str]) -> None:
    """Read a TOML settings file into `environ` as PULP_CONTENT_* defaults: variables
    already set win, and every process started from here (workers) sees the same."""
    try:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"cannot read config file {path}: {exc}") from None
    unknown = sorted(set(values) - set(CONFIG_KEYS))
    if unknown:
        raise InvalidInput(
            f"unknown keys in {path}: {', '.join(unknown)} (known: {', '.join(CONFIG_KEYS)})"
        )
    for key, value in values.items():
        if not isinstance(value, str | int | float):
            raise InvalidInput(f"{path}: {key} must be a string or a number")
        environ.setdefault(f"PULP_CONTENT_{key.upper()}", str(value))


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Settings from PULP_CONTENT_* variables; no configuration at all is fine."""
    env = os.environ if environ is None else environ
    home_text = env.get("PULP_CONTENT_HOME") or "~/.local/share/pulp-content"
    home = Path(home_text).expanduser().resolve()
    url = env.get("PULP_CONTENT_DATABASE_URL") or f"sqlite:///{home / 'db.sqlite3'}"
    cooldown = env.get("PULP_CONTENT_FAILURE_COOLDOWN", "300")
    try:
        failure_cooldown = float(cooldown)
    except ValueError:
        raise InvalidInput(
            f"PULP_CONTENT_FAILURE_COOLDOWN must be seconds, not {cooldown!r}"
        ) from None
    delegate = env.get("PULP_CONTENT_DELEGATE") or None
    if delegate not in (None, "nginx", "apache"):
        raise InvalidInput(f"PULP_CONTENT_DELEGATE must be nginx or apache, not {delegate!r}")
    prefix = env.get("PULP_CONTENT_DELEGATE_PREFIX") or "/pulp/storage/"
    log_format = env.get("PULP_CONTENT_LOG_FORMAT") or "plain"
    if log_format not in ("plain", "json"):
        raise InvalidInput(f"PULP_CONTENT_LOG_FORMAT must be plain or json, not {log_format!r}")
    return Settings(
        home=home,
        database_url=url,
        failure_cooldown=failure_cooldown,
        delegate=delegate,
        delegate_prefix="/" + prefix.strip("/") + "/",
        log_format=log_format,
    )


def database_settings(url: str) -> dict[str, object]:
    """A Django DATABASES entry from `postgres://user:pw@host:port/db` or `sqlite:///path`."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if not path or path == "/":
            raise InvalidInput(f"invalid database URL {url!r}: no file path")
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path,
            # WAL lets the service read while a CLI command writes; IMMEDIATE avoids
            # the deadlock-prone upgrade of a read transaction to a write one.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    if parts.scheme in ("postgres", "postgresql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")) or "postgres",
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "CONN_MAX_AGE": None,  # kept; a broken one is replaced (database.unit_of_work)
            # A server that drops packets is an outage (503) in seconds, not minutes.
            "OPTIONS": {"connect_timeout": 5},
        }
    raise InvalidInput(f"invalid database URL {url!r}: use postgres://... or sqlite:///...")


def connect_params(url: str) -> dict[str, object]:
    """psycopg2.connect() keywords for a postgres:// URL."""
    params = database_settings(url)
    return {
        "dbname": params["NAME"],
        "user": params["USER"],
        "password": params["PASSWORD"],
        "host": params["HOST"],
        "port": params["PORT"] or 5432,
        "connect_timeout": 5,
    }


def configure_django(settings: Settings, **extra: object) -> None:
    """Configure Django once per process; later calls with the same settings do nothing.

    `extra` adds Django settings (the legacy WSGI content app adds its URLconf)."""
    import django
    from django.conf import settings as dj

    if dj.configured:
        return
    if settings.is_sqlite:
        settings.home.mkdir(parents=True, exist_ok=True)
    dj.configure(
        INSTALLED_APPS=["pulp_content.service"],
        DATABASES={"default": database_settings(settings.database_url)},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
        TIME_ZONE="UTC",
        SECRET_KEY="pulp-content-has-no-sessions",
        LOGGING_CONFIG=None,
        **extra,
    )
    django.setup()
    from pulp_content.service import queries

    queries.install()
