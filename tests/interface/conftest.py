"""Fixtures: a site per layer kind (IPC with its own hub, Redis with a unique prefix), one
interface server per test module and kind, and a test-side layer per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from headrace.layers.base import BaseChannelLayer
from tests.conftest import require_service
from tests.interface.support import REDIS, InterfaceServer, Site

KINDS = ["ipc", "redis"]


def _require(kind: str) -> None:
    if kind == "redis":
        require_service("redis", *REDIS)


@pytest.fixture(scope="module", params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    _require(request.param)
    return str(request.param)


@pytest.fixture(scope="module")
def site(kind: str) -> Iterator[Site]:
    site = Site(kind)
    try:
        yield site
    finally:
        site.close()


@pytest.fixture(scope="module")
def server(site: Site) -> InterfaceServer:
    return site.server()


@pytest.fixture
async def layer(site: Site) -> AsyncIterator[BaseChannelLayer]:
    layer = site.layer()
    try:
        yield layer
    finally:
        await layer.close()


@pytest.fixture
def make_site(kind: str) -> Iterator[Callable[..., Site]]:
    """Sites with their own options (capacities, timeouts), closed after the test."""
    made: list[Site] = []

    def make(**options: Any) -> Site:
        site = Site(kind, **options)
        made.append(site)
        return site

    try:
        yield make
    finally:
        for site in made:
            site.close()
