"""A middleware that marks every response, to show the project's MIDDLEWARE ran."""

from collections.abc import Callable
from typing import Any


def stamp(get_response: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def middleware(request: Any) -> Any:
        response = get_response(request)
        response["X-Stamped"] = "yes"
        return response

    return middleware
