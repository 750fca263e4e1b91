"""Django set-up for tests/django: settings, a migrated SQLite file and ASGI call helpers."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from tests.django_setup import migrated_database

__all__ = ["migrated_database"]


@pytest.fixture
def user_factory(migrated_database: None) -> Iterator[object]:
    from django.contrib.auth import get_user_model

    created: list[object] = []
    model = get_user_model()

    def make(username: str, password: str = "secret-pass") -> object:
        user = model.objects.create_user(username=username, password=password)
        created.append(user)
        return user

    yield make
    model.objects.filter(pk__in=[u.pk for u in created]).delete()  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _forget_stopped_processes() -> None:
    """Keep ``processes.STARTED`` to the children still running or started by this test."""
    from tests.django import processes

    processes.STARTED[:] = [p for p in processes.STARTED if p.final_log is None]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failure, attach the log of every server child the test used to its report."""
    report = yield
    if report.failed:
        from tests.django import processes

        for child in processes.STARTED:
            report.sections.append((f"server child log: {' '.join(child.argv)}", child.log()))
    return report
