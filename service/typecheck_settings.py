"""Django settings for mypy's django-stubs plugin only; the service configures Django at
run time with `service.config.configure_django`."""

INSTALLED_APPS = ["service"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
SECRET_KEY = "typecheck-only"
