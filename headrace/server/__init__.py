"""The headrace protocol server (Daphne's role): HTTP/1.1, HTTP/2 and WebSocket over ASGI 3.

Public entry points: :class:`headrace.server.config.Config`, :class:`headrace.server.server.Server`
and :func:`headrace.server.server.run`; the ``headrace`` command is :mod:`headrace.server.cli`.
See ``docs/architecture.md`` for how the modules fit together. This package never imports
Django or the framework.
"""
