"""Channel layers: the contract, the in-memory backend and the alias manager.

``CHANNEL_LAYERS`` (a Django setting, or a mapping given to :meth:`ChannelLayerManager.configure`
when Django is not used) maps aliases to ``{"BACKEND": dotted path, "CONFIG": {...},
"TEST_CONFIG": {...}}``; an entry may also carry ``"ROUTING"``, which makes it a Channels-1
layer as well (:mod:`headrace.asgi` reads it; the backend is built the same way and shared by
both APIs). :data:`channel_layers` builds each alias's backend on first use and
caches it; the cache is dropped when Django's ``setting_changed`` fires for ``CHANNEL_LAYERS``
(``override_settings`` in tests). :func:`get_channel_layer` returns ``None`` for an alias that is
not configured, so consumers work without any layer.

Backends receive ``CONFIG`` as keyword arguments and never read settings themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from headrace.constants import DEFAULT_CHANNEL_LAYER
from headrace.exceptions import ChannelFull, InvalidChannelLayerError
from headrace.layers.base import BaseChannelLayer
from headrace.layers.history import POSITION_KEY, GroupHistory, Position
from headrace.layers.inmemory import InMemoryChannelLayer
from headrace.utils import import_string

__all__ = [
    "POSITION_KEY",
    "BaseChannelLayer",
    "ChannelFull",
    "ChannelLayerManager",
    "GroupHistory",
    "InMemoryChannelLayer",
    "Position",
    "channel_layers",
    "get_channel_layer",
]

LayerSettings = Mapping[str, Mapping[str, Any]]


def _django_settings_layers() -> LayerSettings:
    try:
        from django.conf import settings
        from django.core.exceptions import (
            ImproperlyConfigured,
        )
    except ImportError:
        return {}
    try:
        configured: LayerSettings = getattr(settings, "CHANNEL_LAYERS", {})
    except ImproperlyConfigured:
        return {}
    return configured


class ChannelLayerManager:
    """Builds channel layers from their configuration on first use and caches them by alias."""

    def __init__(self) -> None:
        self.backends: dict[str, BaseChannelLayer] = {}
        self._explicit_configs: LayerSettings | None = None
        self._connect_setting_changed()

    def _connect_setting_changed(self) -> None:
        try:
            from django.core.signals import (
                setting_changed,
            )
        except ImportError:
            return
        setting_changed.connect(self._reset_backends, weak=False)

    def _reset_backends(self, setting: str, **kwargs: Any) -> None:
        if setting == "CHANNEL_LAYERS":
            self.backends = {}

    def configure(self, configs: LayerSettings | None) -> None:
        """Use ``configs`` instead of Django's ``CHANNEL_LAYERS`` (``None`` goes back to
        settings); drops every cached backend."""
        self._explicit_configs = configs
        self.backends = {}

    @property
    def configs(self) -> LayerSettings:
        if self._explicit_configs is not None:
            return self._explicit_configs
        return _django_settings_layers()

    def make_backend(self, name: str) -> BaseChannelLayer:
        """Instantiate the backend of alias ``name`` with its ``CONFIG``."""
        return self._make_backend(name, self._alias_config(name).get("CONFIG", {}))

    def make_test_backend(self, name: str) -> BaseChannelLayer:
        """Instantiate the backend of alias ``name`` with its ``TEST_CONFIG``."""
        alias = self._alias_config(name)
        if "TEST_CONFIG" not in alias:
            raise InvalidChannelLayerError(f"No TEST_CONFIG specified for {name}")
        return self._make_backend(name, alias["TEST_CONFIG"])

    def _alias_config(self, name: str) -> Mapping[str, Any]:
        try:
            return self.configs[name]
        except KeyError:
            raise InvalidChannelLayerError(
                f"No channel layer alias {name!r} in CHANNEL_LAYERS"
            ) from None

    def _make_backend(self, name: str, config: Mapping[str, Any]) -> BaseChannelLayer:
        alias = self._alias_config(name)
        if "BACKEND" not in alias:
            raise InvalidChannelLayerError(f"No BACKEND specified for {name}")
        try:
            backend_class = import_string(alias["BACKEND"])
        except ImportError as exc:
            raise InvalidChannelLayerError(
                f"Cannot import BACKEND {alias['BACKEND']!r} specified for {name}: {exc}"
            ) from exc
        backend: BaseChannelLayer = backend_class(**config)
        return backend

    def __getitem__(self, key: str) -> BaseChannelLayer:
        if key not in self.backends:
            if key not in self.configs:
                raise KeyError(key)
            self.backends[key] = self.make_backend(key)
        return self.backends[key]

    def __contains__(self, key: object) -> bool:
        return key in self.configs

    def set(self, key: str, layer: BaseChannelLayer | None) -> BaseChannelLayer | None:
        """Point alias ``key`` at ``layer`` (``None`` removes it); returns the previous layer.
        Useful for swapping a backend during tests."""
        old = self.backends.get(key)
        if layer is None:
            self.backends.pop(key, None)
        else:
            self.backends[key] = layer
        return old


def get_channel_layer(alias: str = DEFAULT_CHANNEL_LAYER) -> BaseChannelLayer | None:
    """The channel layer configured under ``alias``, or ``None`` when there is none."""
    try:
        return channel_layers[alias]
    except KeyError:
        return None


channel_layers = ChannelLayerManager()
"""The process-wide manager; consumers and workers look their layer up here."""
