"""Plain Django views that write cards: the ORM writes the bindings must report."""

import json

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from tests.live.cards.models import Card


def card_list(request: HttpRequest) -> JsonResponse:
    cards = Card.objects.order_by("pk").values("pk", "board", "title", "done", "secret")
    return JsonResponse({"cards": list(cards)})


@csrf_exempt
def card_create(request: HttpRequest) -> JsonResponse:
    card = Card.objects.create(**json.loads(request.body))
    return JsonResponse({"pk": card.pk})


class RolledBack(Exception):
    pass


@csrf_exempt
def card_create_rolled_back(request: HttpRequest) -> HttpResponse:
    try:
        with transaction.atomic():
            Card.objects.create(**json.loads(request.body))
            raise RolledBack
    except RolledBack:
        return HttpResponse(status=409)


@csrf_exempt
def card_update(request: HttpRequest, pk: int) -> JsonResponse:
    card = Card.objects.get(pk=pk)
    for name, value in json.loads(request.body).items():
        setattr(card, name, value)
    card.save()
    return JsonResponse({"pk": card.pk})


@csrf_exempt
def card_delete(request: HttpRequest, pk: int) -> JsonResponse:
    Card.objects.get(pk=pk).delete()
    return JsonResponse({"pk": pk})


BRIDGE_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>bridge</title></head><body>
{loader}
</body></html>"""

CLASSIC = """<script src="/static/headrace/js/websocketbridge.js"></script>
<script>
window.Bridge = channels.WebSocketBridge; document.body.dataset.ready = "classic";
</script>"""

MODULE = """<script type="module">
import { WebSocketBridge } from "/static/headrace/js/websocketbridge.mjs";
window.Bridge = WebSocketBridge; document.body.dataset.ready = "module";
</script>"""


def bridge_page(request: HttpRequest, mode: str) -> HttpResponse:
    """A page that loads the JavaScript client as a classic script or as an ES module."""
    loader = CLASSIC if mode == "classic" else MODULE
    return HttpResponse(BRIDGE_PAGE.format(loader=loader), content_type="text/html")
