"""Django system checks for projects that install the ``headrace`` app.

* ``headrace.E001``: ``headrace`` must come before ``django.contrib.staticfiles`` in
  ``INSTALLED_APPS``; both apps ship a ``runserver`` command and Django uses the first.
* ``headrace.E002``: ``ASGI_APPLICATION`` must be set and name an importable object, unless
  the project is a Channels-1 one (a ``CHANNEL_LAYERS`` entry has ``ROUTING``), which needs none.
* ``headrace.E003``: ``CHANNEL_LAYERS`` must be a dict of aliases to dicts with a
  ``BACKEND`` string and, optionally, a ``CONFIG`` dict.
* ``headrace.E004``: every layer ``BACKEND`` must be importable.

``register_checks`` is called from ``HeadraceConfig.ready``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.checks import CheckMessage, Error, Tags, register

__all__ = [
    "check_app_order",
    "check_asgi_application",
    "check_channel_layers",
    "register_checks",
]

_LAYER_KEYS = {"BACKEND", "CONFIG", "TEST_CONFIG", "ROUTING"}


def check_app_order(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """E001: the headrace app is listed before ``django.contrib.staticfiles``."""
    from django.apps import apps

    names = [config.name for config in apps.get_app_configs()]
    if "django.contrib.staticfiles" not in names or "headrace" not in names:
        return []
    if names.index("headrace") < names.index("django.contrib.staticfiles"):
        return []
    return [
        Error(
            "headrace must be listed before django.contrib.staticfiles in INSTALLED_APPS.",
            hint="Move 'headrace' above 'django.contrib.staticfiles' so its runserver is used.",
            id="headrace.E001",
        )
    ]


def check_asgi_application(
    app_configs: Sequence[Any] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E002: ``ASGI_APPLICATION`` is set and importable."""
    from django.conf import settings
    from django.utils.module_loading import import_string

    path = getattr(settings, "ASGI_APPLICATION", None)
    if path is None and _has_routing_layer(getattr(settings, "CHANNEL_LAYERS", {})):
        return []  # Channels 1.x: interface servers and workers run the layer's ROUTING
    if not path or not isinstance(path, str):
        return [
            Error(
                "ASGI_APPLICATION is not set.",
                hint="Set ASGI_APPLICATION = 'yourproject.asgi.application' in your settings.",
                id="headrace.E002",
            )
        ]
    try:
        import_string(path)
    except Exception as exc:  # the module may fail in any way while importing
        return [
            Error(
                f"ASGI_APPLICATION {path!r} cannot be imported: {exc}",
                hint="Point it at a module attribute, e.g. 'mysite.asgi.application'.",
                id="headrace.E002",
            )
        ]
    return []


def _has_routing_layer(layers: Any) -> bool:
    return isinstance(layers, dict) and any(
        isinstance(layer, dict) and "ROUTING" in layer for layer in layers.values()
    )


def check_channel_layers(
    app_configs: Sequence[Any] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E003/E004: ``CHANNEL_LAYERS`` has the documented shape and importable backends."""
    from django.conf import settings

    layers = getattr(settings, "CHANNEL_LAYERS", {})
    if not isinstance(layers, dict):
        return [_layer_error("CHANNEL_LAYERS must be a dict of alias to layer settings.")]
    errors: list[CheckMessage] = []
    for alias, layer in layers.items():
        errors.extend(_check_layer(str(alias), layer))
    return errors


def _check_layer(alias: str, layer: Any) -> list[CheckMessage]:
    from django.utils.module_loading import import_string

    if not isinstance(layer, dict):
        return [_layer_error(f"CHANNEL_LAYERS[{alias!r}] must be a dict.")]
    unknown = set(layer) - _LAYER_KEYS
    if unknown:
        return [_layer_error(f"CHANNEL_LAYERS[{alias!r}] has unknown keys {sorted(unknown)}.")]
    backend = layer.get("BACKEND")
    if not isinstance(backend, str) or not backend:
        return [_layer_error(f"CHANNEL_LAYERS[{alias!r}] needs a BACKEND import path.")]
    for key in ("CONFIG", "TEST_CONFIG"):
        if key in layer and not isinstance(layer[key], dict):
            return [_layer_error(f"CHANNEL_LAYERS[{alias!r}][{key!r}] must be a dict.")]
    try:
        import_string(backend)
    except ImportError as exc:
        return [
            Error(
                f"CHANNEL_LAYERS[{alias!r}] BACKEND {backend!r} cannot be imported: {exc}",
                hint="Use e.g. 'headrace.layers.InMemoryChannelLayer' and install its extra.",
                id="headrace.E004",
            )
        ]
    return []


def _layer_error(message: str) -> Error:
    hint = "Example: {'default': {'BACKEND': 'headrace.layers.InMemoryChannelLayer'}}"
    return Error(message, hint=hint, id="headrace.E003")


def register_checks() -> None:
    """Register the checks with Django (idempotent: Django keeps a set)."""
    register(check_app_order, Tags.staticfiles)
    register(check_asgi_application)
    register(check_channel_layers)
