"""Django app configuration: add ``"headrace"`` to ``INSTALLED_APPS`` for its commands."""

from __future__ import annotations

from django.apps import AppConfig


class HeadraceConfig(AppConfig):  # type: ignore[misc, unused-ignore]
    """The headrace Django application (management commands, system checks)."""

    name = "headrace"
    verbose_name = "Headrace"

    def ready(self) -> None:
        from headrace.checks import register_checks

        register_checks()


class ChannelsConfig(HeadraceConfig):
    """Channels' app-config name, for ``INSTALLED_APPS = ["headrace.apps.ChannelsConfig"]``
    left over from a migration; ``"headrace"`` alone picks :class:`HeadraceConfig`."""

    default = False
