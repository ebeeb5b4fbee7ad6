"""The legacy content app's URLs: its content view under the configured content prefix.
Django imports this after `wsgi.create_application` configured it."""

from __future__ import annotations

import re

from django.conf import settings
from django.urls import path, re_path

from pulp_content.service.legacy import views

urlpatterns = [
    path("metrics", views.metrics),
    re_path(rf"^{re.escape(settings.PULP_CONTENT_PREFIX.lstrip('/'))}(?P<path>.*)$", views.content),
]
