"""Django settings for mypy's django-stubs plugin only; the service configures Django at
run time with `service.config.configure_django`."""

from pathlib import Path
from typing import Any

INSTALLED_APPS = ["pulp_content.service"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
SECRET_KEY = "typecheck-only"
# The legacy content app's own settings (service.legacy.wsgi sets them at run time).
CONTENT: dict[str, Any] = {}
PULP_CONTENT_STORAGE = Path("/nonexistent")
PULP_CONTENT_PREFIX = "/pulp/content/"
# The Fernet key file (service.config.configure_django names it at run time).
PULP_CONTENT_SECRET_KEY_FILE = "/nonexistent/secret.key"
PULP_CONTENT_TRUSTED_PROXIES: tuple[Any, ...] = ()
