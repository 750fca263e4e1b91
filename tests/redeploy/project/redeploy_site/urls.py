"""No views: ``/version`` has its own consumer; every other path gets Django's 404."""

from __future__ import annotations

from typing import Any

urlpatterns: list[Any] = []
