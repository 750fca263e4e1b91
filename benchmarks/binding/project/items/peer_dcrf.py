from typing import Any

from djangochannelsrestframework.consumers import AsyncAPIConsumer
from djangochannelsrestframework.observer import model_observer
from rest_framework import serializers

from items.models import Item


class ItemSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = Item
        fields = ["id", "name", "value"]


class ItemsConsumer(AsyncAPIConsumer):
    """The documented DCRF pattern: subscribe on accept, forward every observed change."""

    async def accept(self, **kwargs: Any) -> None:
        await super().accept(**kwargs)
        await self.item_activity.subscribe()

    @model_observer(Item)
    async def item_activity(self, message: Any, observer: Any = None, **kwargs: Any) -> None:
        await self.send_json(message)

    @item_activity.serializer
    def item_activity(self, instance: Item, action: Any, **kwargs: Any) -> dict[str, Any]:
        return {"data": ItemSerializer(instance).data, "action": action.value, "pk": instance.pk}
