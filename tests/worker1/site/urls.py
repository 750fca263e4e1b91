"""Views the view consumer serves."""

import hashlib
import os
import tempfile
from collections.abc import Iterator

from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path


def hello(request: HttpRequest) -> HttpResponse:
    response = JsonResponse(
        {
            "method": request.method,
            "path": request.path,
            "path_info": request.path_info,
            "script_name": request.META["SCRIPT_NAME"],
            "name": request.GET.get("name"),
            "agent": request.META.get("HTTP_USER_AGENT"),
            "remote": request.META.get("REMOTE_ADDR"),
            "server": request.get_host(),
            "secure": request.is_secure(),
            "cookie": request.COOKIES.get("flavour"),
            "pid": os.getpid(),
        }
    )
    response.set_cookie("seen", "1")
    return response


def upload(request: HttpRequest) -> HttpResponse:
    body = request.body
    return JsonResponse(
        {
            "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "field": request.POST.get("field")
            if request.content_type.endswith("urlencoded")
            else None,
        }
    )


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def parts() -> Iterator[bytes]:
        for number in range(3):
            yield f"part {number};".encode()

    return StreamingHttpResponse(parts(), content_type="text/plain")


def big_file(request: HttpRequest) -> FileResponse:
    handle = tempfile.TemporaryFile()  # noqa: SIM115  # FileResponse closes it
    handle.write(b"x" * (1300 * 1024))
    handle.seek(0)
    return FileResponse(handle, content_type="application/octet-stream")


def broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("this view is broken")


urlpatterns = [
    path("hello/", hello),
    path("upload/", upload),
    path("slow-upload/", upload),
    path("stream/", stream),
    path("file/", big_file),
    path("broken/", broken),
]
