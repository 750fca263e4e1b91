"""What the test server serves: the bridge over the layer named by ``$HEADRACE_INTERFACE_TEST``."""

from __future__ import annotations

from headrace.interface import DEFAULT_HTTP_TIMEOUT, InterfaceApplication
from tests.interface.support import build_layer, spec_from_environment

spec = spec_from_environment()
channel_layer = build_layer(spec)
application = InterfaceApplication(
    channel_layer, http_timeout=spec.get("http_timeout", DEFAULT_HTTP_TIMEOUT)
)
