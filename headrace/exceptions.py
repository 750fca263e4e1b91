"""Every exception headrace raises on purpose, in one tree.

The names and meanings match Channels 4.3 (``channels.exceptions``), so a project migrates by
changing the import. Each class also sits under :class:`HeadraceError`, so "anything headrace
raised on purpose" is one ``except`` clause, and some carry a builtin base that Channels users
already catch (``ValueError``, ``TypeError``)::

    Exception
    └── HeadraceError
        ├── ChannelLayerError                       problems talking to a channel layer
        │   ├── ChannelFull                         send() to a channel at capacity
        │   ├── MessageTooLarge                     message bigger than the backend accepts
        │   ├── InvalidChannelLayerError (ValueError)   bad CHANNEL_LAYERS configuration
        │   └── InvalidChannelName (TypeError)      channel/group name breaks the naming rules
        ├── ConsumerControl                         control flow raised inside consumers
        │   ├── StopConsumer                        end this application instance cleanly
        │   ├── AcceptConnection                    accept the WebSocket from a connect handler
        │   ├── DenyConnection                      reject the WebSocket from a connect handler
        │   └── ConsumeLater                        (1.x) requeue the message, run it later
        ├── RequestAborted                          the client went away while sending the body
        │   └── RequestTimeout                      ... because it was too slow
        └── ServerError                             problems of the protocol server
            └── ConfigError (ValueError)            an invalid server option

``InvalidChannelName`` is a ``TypeError`` because Channels raises ``TypeError`` for bad names;
existing ``pytest.raises(TypeError)`` checks keep passing.
"""

from __future__ import annotations

__all__ = [
    "AcceptConnection",
    "ChannelFull",
    "ChannelLayerError",
    "ConfigError",
    "ConsumeLater",
    "ConsumerControl",
    "DenyConnection",
    "HeadraceError",
    "InvalidChannelLayerError",
    "InvalidChannelName",
    "MessageTooLarge",
    "RequestAborted",
    "RequestTimeout",
    "ServerError",
    "StopConsumer",
]


class HeadraceError(Exception):
    """Root of every exception headrace raises on purpose."""


class ChannelLayerError(HeadraceError):
    """A channel layer could not do what was asked."""


class ChannelFull(ChannelLayerError):
    """The channel holds ``capacity`` messages already; the message was not sent."""


class MessageTooLarge(ChannelLayerError):
    """The message is larger than the backend can carry."""


class InvalidChannelLayerError(ChannelLayerError, ValueError):
    """The ``CHANNEL_LAYERS`` setting is wrong (no BACKEND, unknown alias, import error...)."""


class InvalidChannelName(ChannelLayerError, TypeError):
    """A channel or group name is not a short ASCII name as the layer contract requires."""


class ConsumerControl(HeadraceError):
    """Raised inside a consumer to steer its connection; not an error condition."""


class StopConsumer(ConsumerControl):
    """Raised by a consumer to stop and close down its application instance."""


class AcceptConnection(ConsumerControl):
    """Raised in a ``websocket.connect`` handler to accept the connection."""


class DenyConnection(ConsumerControl):
    """Raised in a ``websocket.connect`` handler to deny the connection."""


class ConsumeLater(ConsumerControl):
    """Raised by a Channels-1 consumer to have the worker put its message back at the end of
    the channel it came from and run it again later (at most ten times)."""


class RequestAborted(HeadraceError):
    """The client aborted the request while its body was being read."""


class RequestTimeout(RequestAborted):
    """The request was aborted because the body did not arrive in time."""


class ServerError(HeadraceError):
    """The protocol server failed in a way the caller should see."""


class ConfigError(ServerError, ValueError):
    """A server option has an invalid value; the message names the option."""
