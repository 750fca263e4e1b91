"""The bindings under test: a modern one and a 1.x one on the same model."""

from typing import Any

from headrace.binding import DELETE, ModelBinding
from headrace.binding.websockets import WebsocketBindingWithMembers
from tests.live.cards.models import Card


def may(action: str, pk: Any) -> bool:
    """Anyone may do anything except delete a card whose title starts with "keep"."""
    return action != DELETE or not Card.objects.filter(pk=pk, title__startswith="keep").exists()


class CardBinding(ModelBinding):
    model = Card
    stream = "cards"
    fields = ["board", "title", "done"]

    @classmethod
    def group_names(cls, instance: Card) -> list[str]:
        return [f"board-{instance.board}"]

    def has_permission(self, user: Any, action: str, pk: Any) -> bool:
        return may(action, pk)


class CardBinding1x(WebsocketBindingWithMembers):
    model = "cards.Card"
    stream = "cards1"
    exclude = ["secret"]
    send_members = ["title_upper"]

    @classmethod
    def group_names(cls, instance: Card) -> list[str]:
        return [f"board1-{instance.board}"]

    def has_permission(self, user: Any, action: str, pk: Any) -> bool:
        return may(action, pk)
