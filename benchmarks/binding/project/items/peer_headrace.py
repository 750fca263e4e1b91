from typing import Any

from headrace.binding import BindingConsumer, ModelBinding
from items.models import Item


class ItemBinding(ModelBinding):
    model = Item
    stream = "items"
    fields = ["name", "value"]

    @classmethod
    def group_names(cls, instance: Item) -> list[str]:
        return ["items"]

    def has_permission(self, user: Any, action: str, pk: Any) -> bool:
        return False


class ItemsConsumer(BindingConsumer):
    groups = ["items"]
    bindings = [ItemBinding]
