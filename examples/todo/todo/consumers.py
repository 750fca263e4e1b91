from headrace.binding import BindingConsumer
from headrace.generic.multiplexer import AsyncJsonWebsocketDemultiplexer
from todo.bindings import GROUP, TaskBinding


class Tasks(BindingConsumer):
    """The ``tasks`` stream: watches the list's group and applies the page's edits."""

    groups = [GROUP]
    bindings = [TaskBinding]


class Live(AsyncJsonWebsocketDemultiplexer):
    """One socket per page; add streams here (chat, presence...) as the app grows."""

    applications = {"tasks": Tasks.as_asgi()}
