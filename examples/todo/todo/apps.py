from django.apps import AppConfig


class TodoConfig(AppConfig):
    name = "todo"

    def ready(self) -> None:
        from todo import bindings  # noqa: F401 (defining a binding connects its signals)
