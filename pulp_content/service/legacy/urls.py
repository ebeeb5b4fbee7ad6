from __future__ import annotations

from django.urls import path, re_path

from pulp_content.service.legacy import views

urlpatterns = [
    path("metrics", views.metrics),
    re_path(r"^pulp/content/(?P<path>.*)$", views.content),
]
