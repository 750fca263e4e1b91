"""Every public name of Channels 4 has a headrace counterpart with a compatible signature.

The installed ``channels`` package is the reference: for each of its modules, the names it
exports (``__all__``, else the classes and functions it defines) must exist in the
``headrace`` module at the same path; each public method and attribute a Channels class
defines must exist on the headrace class; and every function or method must accept
Channels' parameters under the same names, in the same order and of the same kind (headrace
may add optional parameters after them). A name Channels adds in a new release therefore
fails here until headrace has it or it is listed in ``DIFFERENCES`` with the reason.
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType
from typing import Any

import pytest
from django.apps import apps

CHANNELS_MODULES = [
    "channels",
    "channels.apps",
    "channels.auth",
    "channels.consumer",
    "channels.db",
    "channels.exceptions",
    "channels.generic.http",
    "channels.generic.websocket",
    "channels.layers",
    "channels.middleware",
    "channels.routing",
    "channels.security.websocket",
    "channels.sessions",
    "channels.testing",
    "channels.testing.application",
    "channels.testing.http",
    "channels.testing.websocket",
    "channels.testing.live",
    "channels.worker",
    "channels.management.commands.runworker",
]

DIFFERENCES = {
    # Daphne-specific machinery of Channels' live-server case: headrace forks its own server
    # from inherited sockets (headrace.testing.live) and serves static files with a flag.
    "channels.testing.live.set_database_connection": "no Daphne process to configure",
    "channels.testing.live.make_application": "takes serve_static, not static_wrapper",
    "channels.testing.live.ChannelsLiveServerTestCase.ProtocolServerProcess": "Daphne's",
    "channels.testing.live.ChannelsLiveServerTestCase.static_wrapper": "serve_static flag",
    "channels.testing.ChannelsLiveServerTestCase.ProtocolServerProcess": "Daphne's",
    "channels.testing.ChannelsLiveServerTestCase.static_wrapper": "serve_static flag",
    # A private helper of Channels' test communicator (a no-op coroutine).
    "channels.testing.application.no_op": "internal helper",
}


def exported_names(module: ModuleType) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == module.__name__
    ]


def parameters(function: Any) -> list[tuple[str, str]] | None:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None
    return [
        (p.name, p.kind.name)
        for p in signature.parameters.values()
        if p.name not in ("self", "cls")
    ]


def signature_problem(reference: Any, ours: Any) -> str | None:
    """Why ``ours`` cannot be called like ``reference``, or None when it can."""
    expected, actual = parameters(reference), parameters(ours)
    if expected is None or actual is None or expected == actual:
        return None
    if any(kind == "VAR_KEYWORD" for _, kind in actual):
        actual = [p for p in actual if p[1] != "VAR_KEYWORD"]
        expected = [p for p in expected if p[1] != "VAR_KEYWORD"]
    if actual[: len(expected)] == expected:
        extra = inspect.signature(ours).parameters
        if all(
            extra[name].default is not inspect.Parameter.empty
            for name, _ in actual[len(expected) :]
        ):
            return None
    return f"{parameters(reference)} != {parameters(ours)}"


def class_problems(path: str, reference: type, ours: type) -> list[str]:
    problems = []
    for attribute, value in vars(reference).items():
        if attribute.startswith("_") and attribute != "__init__":
            continue
        qualified = f"{path}.{attribute}"
        if qualified in DIFFERENCES:
            continue
        if not hasattr(ours, attribute):
            problems.append(f"{qualified}: missing")
        elif callable(value) and not inspect.isclass(value):
            problem = signature_problem(value, getattr(ours, attribute))
            if problem:
                problems.append(f"{qualified}: {problem}")
    return problems


def module_problems(channels_name: str) -> list[str]:
    reference = importlib.import_module(channels_name)
    try:
        ours = importlib.import_module(channels_name.replace("channels", "headrace", 1))
    except ImportError as exc:
        return [f"{channels_name}: no headrace module ({exc})"]
    problems = []
    for name in exported_names(reference):
        path = f"{channels_name}.{name}"
        if path in DIFFERENCES:
            continue
        value, counterpart = getattr(reference, name), getattr(ours, name, None)
        if counterpart is None:
            problems.append(f"{path}: missing")
        elif inspect.isclass(value):
            problems.extend(class_problems(path, value, counterpart))
        elif callable(value):
            problem = signature_problem(value, counterpart)
            if problem:
                problems.append(f"{path}: {problem}")
    return problems


@pytest.mark.parametrize("channels_name", CHANNELS_MODULES)
def test_public_names_and_signatures_match_channels(channels_name: str) -> None:
    assert module_problems(channels_name) == []


def test_the_comparison_notices_a_missing_name() -> None:
    class Reference:
        def method(self, a: int, b: int = 0) -> None: ...

    class Ours:
        def method(self, a: int) -> None: ...

    assert class_problems("Reference", Reference, Ours) == [
        "Reference.method: [('a', 'POSITIONAL_OR_KEYWORD'), ('b', 'POSITIONAL_OR_KEYWORD')]"
        " != [('a', 'POSITIONAL_OR_KEYWORD')]"
    ]
    assert class_problems("Reference", Reference, object) == ["Reference.method: missing"]


def test_channels_app_config_name_is_accepted_and_headrace_stays_the_default() -> None:
    from headrace.apps import ChannelsConfig, HeadraceConfig

    assert type(apps.get_app_config("headrace")) is HeadraceConfig
    assert issubclass(ChannelsConfig, HeadraceConfig)
    assert ChannelsConfig.name == "headrace"
