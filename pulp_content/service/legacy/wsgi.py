"""The legacy content app for a WSGI server.

gunicorn "pulp_content.service.legacy.wsgi:create_application()"
"""

from __future__ import annotations

from typing import Any

from pulp_content.service.config import configure_django, load_settings
from pulp_content.service.legacy.settings import content_from_env


def create_application() -> Any:
    """Configure Django from the environment and return its WSGI handler."""
    settings = load_settings()
    configure_django(
        settings,
        ROOT_URLCONF="pulp_content.service.legacy.urls",
        ALLOWED_HOSTS=["*"],
        MIDDLEWARE=["pulp_content.service.legacy.views.CountingMiddleware"],
        CONTENT=content_from_env(),
        PULP_CONTENT_STORAGE=settings.storage_root,
        PULP_CONTENT_PREFIX=settings.content_prefix,
        PULP_CONTENT_TRUSTED_PROXIES=settings.trusted_proxies,
        APPEND_SLASH=False,
    )
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()
