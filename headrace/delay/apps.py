"""Django app configuration of the delay server (``INSTALLED_APPS = [..., "headrace.delay"]``)."""

from __future__ import annotations

from django.apps import AppConfig


class DelayConfig(AppConfig):  # type: ignore[misc, unused-ignore]
    name = "headrace.delay"
    label = "headrace_delay"
    verbose_name = "Headrace delay server"
    default_auto_field = "django.db.models.BigAutoField"
