"""headrace.E001-E004 system checks, run through Django's check framework."""

from __future__ import annotations

from django.core import checks
from django.test import override_settings

from headrace.checks import check_app_order, check_asgi_application, check_channel_layers


def ids(messages: list[checks.CheckMessage]) -> list[str | None]:
    return [message.id for message in messages]


def test_test_project_passes_all_checks() -> None:
    errors = [m for m in checks.run_checks() if m.id and m.id.startswith("headrace.")]
    assert errors == []


def test_checks_are_registered_by_the_app() -> None:
    registered = checks.registry.registry.get_checks()
    for check in (check_app_order, check_asgi_application, check_channel_layers):
        assert check in registered


@override_settings(
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.staticfiles",
        "headrace",
    ]
)
def test_app_after_staticfiles_is_e001() -> None:
    assert ids(check_app_order()) == ["headrace.E001"]


@override_settings(INSTALLED_APPS=["headrace", "django.contrib.contenttypes"])
def test_app_without_staticfiles_is_fine() -> None:
    assert check_app_order() == []


def test_asgi_application_missing_is_e002() -> None:
    with override_settings():
        from django.conf import settings

        del settings.ASGI_APPLICATION
        assert ids(check_asgi_application()) == ["headrace.E002"]


@override_settings(
    CHANNEL_LAYERS={
        "default": {
            "BACKEND": "headrace.layers.InMemoryChannelLayer",
            "ROUTING": "mysite.routing.channel_routing",
        }
    }
)
def test_channels1_project_needs_no_asgi_application() -> None:
    with override_settings():
        from django.conf import settings

        del settings.ASGI_APPLICATION
        assert check_asgi_application() == []


@override_settings(ASGI_APPLICATION="tests.django.no_such_module.application")
def test_asgi_application_not_importable_is_e002() -> None:
    (error,) = check_asgi_application()
    assert error.id == "headrace.E002"
    assert "no_such_module" in error.msg


@override_settings(ASGI_APPLICATION="tests.django.settings.NOT_THERE")
def test_asgi_application_missing_attribute_is_e002() -> None:
    assert ids(check_asgi_application()) == ["headrace.E002"]


@override_settings(CHANNEL_LAYERS=["not", "a", "dict"])
def test_channel_layers_not_a_dict_is_e003() -> None:
    assert ids(check_channel_layers()) == ["headrace.E003"]


@override_settings(
    CHANNEL_LAYERS={
        "no_backend": {"CONFIG": {}},
        "bad_config": {"BACKEND": "headrace.layers.InMemoryChannelLayer", "CONFIG": 3},
        "typo": {"BACKEND": "headrace.layers.InMemoryChannelLayer", "CONFG": {}},
        "not_dict": "redis://",
    }
)
def test_malformed_layers_are_e003() -> None:
    assert ids(check_channel_layers()) == ["headrace.E003"] * 4


@override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "headrace.layers.NoSuchLayer"}})
def test_unimportable_backend_is_e004() -> None:
    assert ids(check_channel_layers()) == ["headrace.E004"]


@override_settings(CHANNEL_LAYERS={})
def test_no_layers_is_fine() -> None:
    assert check_channel_layers() == []
