"""Django set-up for the Channels-1 API tests: the same settings and SQLite file as
tests/django (so both folders can run in one pytest process), migrated once."""

from __future__ import annotations

import os
from collections.abc import Iterator

import django
import pytest

_SETTINGS_FROM_ENVIRONMENT = "DJANGO_SETTINGS_MODULE" in os.environ
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django.settings")
django.setup()
if not _SETTINGS_FROM_ENVIRONMENT:
    del os.environ["DJANGO_SETTINGS_MODULE"]


@pytest.fixture(scope="session", autouse=True)
def migrated_database() -> Iterator[None]:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    yield
