"""One Django project served by both stacks: Channels 1.x (Python 3.6) and headrace.

``DECOUPLED_STACK`` picks the framework (``channels`` or ``headrace``); everything else --
consumers, routing, views, settings -- is the same code. This package must stay importable on
Python 3.6 and Django 1.11 (no ``from __future__ import annotations``, no 3.8+ syntax).
"""
