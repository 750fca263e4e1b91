"""Data binding: Django model changes streamed to WebSocket clients, and client changes applied.

Modern API: :class:`ModelBinding` (declare a binding) and :class:`BindingConsumer` (serve it on
a socket, directly or under :class:`headrace.generic.multiplexer.AsyncJsonWebsocketDemultiplexer`).
Channels 1.x API: :mod:`headrace.binding.websockets` (``WebsocketBinding``,
``WebsocketBindingWithMembers``) and the constants of :mod:`headrace.binding.base`.
See docs/live-models.md.
"""

from __future__ import annotations

from headrace.binding.base import CREATE, DELETE, UPDATE, Binding
from headrace.binding.consumer import BindingConsumer
from headrace.binding.model_binding import ModelBinding

__all__ = ["CREATE", "DELETE", "UPDATE", "Binding", "BindingConsumer", "ModelBinding"]
