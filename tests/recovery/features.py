"""The rooms' group features, shared by the test applications and the test processes."""

from typing import Any

FEATURES: dict[str, Any] = {
    "history": {"room.*": {"size": 1000, "ttl": 300}},
    "presence": {"room.*": {"ttl": 30, "events": True}},
}
