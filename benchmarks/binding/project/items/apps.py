from django.apps import AppConfig
from django.conf import settings


class ItemsConfig(AppConfig):
    name = "items"

    def ready(self) -> None:
        # Import the peer's observer/binding so its signal handlers are connected in every
        # process that saves (the benchmark's writer) as well as in the server.
        if settings.PEER == "headrace":
            from items import peer_headrace  # noqa: F401
        else:
            from items import peer_dcrf  # noqa: F401
