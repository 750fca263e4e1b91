"""Django configured once for every test folder that needs it (tests/django, tests/channels1/api):
the test settings and SQLite file, migrated once per session. A conftest imports this module and
re-exports :func:`migrated_database`."""

from __future__ import annotations

import os
from collections.abc import Iterator

import django
import pytest

_SETTINGS_FROM_ENVIRONMENT = "DJANGO_SETTINGS_MODULE" in os.environ
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django.settings")
django.setup()
if not _SETTINGS_FROM_ENVIRONMENT:
    # Configured now; keep the variable out of other test folders' subprocesses. (Our own
    # subprocesses pass --settings, or get the module from the live-server case.)
    del os.environ["DJANGO_SETTINGS_MODULE"]


@pytest.fixture(scope="session", autouse=True)
def migrated_database() -> Iterator[None]:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    yield
