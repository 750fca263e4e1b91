"""Fixtures for the framework tests: a configured in-memory channel layer."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from headrace.layers import BaseChannelLayer, channel_layers, get_channel_layer

IN_MEMORY = {"default": {"BACKEND": "headrace.layers.InMemoryChannelLayer"}}


@pytest.fixture
def channel_layer() -> Iterator[BaseChannelLayer]:
    """The default alias points at a fresh InMemoryChannelLayer for the test."""
    channel_layers.configure(IN_MEMORY)
    layer = get_channel_layer()
    assert layer is not None
    yield layer
    channel_layers.configure(None)


@pytest.fixture
def no_channel_layer() -> Iterator[None]:
    """No channel layer is configured during the test."""
    channel_layers.configure({})
    yield
    channel_layers.configure(None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failure, attach the log of the test's server child process (``served``)."""
    report = yield
    served = getattr(item, "funcargs", {}).get("served")
    if report.failed and served is not None:
        report.sections.append(("server child log", "".join(served.lines)))
    return report
