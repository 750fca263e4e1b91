"""The example project's routing plus consumers only the process tests need."""

from examples.channels1.project.routing import channel_routing as example_routing
from headrace.routing import include, route
from tests.channels1.api import consumers

channel_routing = [
    include(example_routing),
    route("later", consumers.later_once),
    route("never", consumers.always_later),
]
