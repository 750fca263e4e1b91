"""Django set-up for the Channels-1 API tests: the same settings and SQLite file as
tests/django (so both folders can run in one pytest process), migrated once."""

from __future__ import annotations

from tests.django_setup import migrated_database

__all__ = ["migrated_database"]
