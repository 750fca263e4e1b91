from django.apps import AppConfig


class CardsConfig(AppConfig):
    name = "tests.live.cards"
    label = "cards"

    def ready(self) -> None:
        from tests.live.cards import bindings  # noqa: F401 (connects the bindings' signals)
