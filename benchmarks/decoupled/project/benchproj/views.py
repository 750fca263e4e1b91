"""A plain Django view, served through each stack's view consumer."""

from django.http import HttpResponse


def hello(request):
    return HttpResponse(b"Hello from a Django view!", content_type="text/plain")
