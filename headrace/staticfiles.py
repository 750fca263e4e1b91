"""``StaticFilesConsumer``: the Channels-1 ``http.request`` consumer that also serves static files.

It is :class:`headrace.handler.ViewConsumer` with a handler that answers paths under
``STATIC_URL`` from the static files finders (``django.contrib.staticfiles``, as ``runserver``
does with ``DEBUG``) and hands every other request to the views. A file that is not found
gets Django's 404 (the technical page when ``DEBUG``). ``STATIC_URL`` with a host (a CDN) is
never served here. Files go out as ``FileResponse`` chunks of the handler's ``chunk_size``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from django.conf import settings
from django.http import Http404

from headrace.handler import AsgiHandler, ViewConsumer

__all__ = ["StaticFilesConsumer", "StaticFilesHandler"]


class StaticFilesHandler(AsgiHandler):
    """An :class:`AsgiHandler` that serves ``STATIC_URL`` itself."""

    def __init__(self) -> None:
        super().__init__()
        static_url = settings.STATIC_URL
        if not static_url:
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured("StaticFilesConsumer needs the STATIC_URL setting")
        self.base_url = urlsplit(str(static_url))

    def should_handle(self, path: str) -> bool:
        return path.startswith(self.base_url.path) and not self.base_url.netloc

    def file_path(self, path: str) -> str:
        return url2pathname(path[len(self.base_url.path) :])

    def serve(self, request: Any) -> Any:
        from django.contrib.staticfiles.views import serve

        return serve(request, self.file_path(request.path), insecure=True)

    def get_response(self, request: Any) -> Any:
        if self.should_handle(request.path):
            try:
                return self.serve(request)
            except Http404 as exc:
                from django.views import debug

                if settings.DEBUG:
                    return debug.technical_404_response(request, exc)
                from django.http import HttpResponseNotFound

                return HttpResponseNotFound(b"Not Found")
        return super().get_response(request)


class StaticFilesConsumer(ViewConsumer):
    """A :class:`ViewConsumer` that serves static files under ``STATIC_URL`` too."""

    handler_class = StaticFilesHandler
