"""The leaked-file upload's size limit, enforced while the request is read.

Django spools an upload to disk (FILE_UPLOAD_TEMP_DIR) before any form sees it, so a
limit checked by the form comes after a 10 GB body has filled the disk. This handler,
put first on the breach page's request, refuses a request whose declared length is
over the limit without reading its body, and stops reading (StopUpload, the connection
reset) as soon as the files received pass it; Django's temporary file of the file cut
short is closed and deleted. The view then answers with the refusal it recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest, QueryDict
from django.utils.datastructures import MultiValueDict

# A web worker is stopped after 60 s (coffre.serving.server) and a 500,000-row CSV
# (about 100 MB) takes up to a minute to scan: larger files go through the CLI. The
# limit holds for the files of one upload together.
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
MAX_FILES = 10
FORM_BYTES = 1024 * 1024  # the form's other fields and the multipart framing


@dataclass(frozen=True)
class Refusal:
    """Why the upload stopped: ``name`` is the file that alone passed the limit, or ""
    when the request (its declared length, or its files together) did."""

    name: str
    limit: int


class LimitedUploadHandler(FileUploadHandler):
    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.received = self.in_file = 0
        self.refusal: Refusal | None = None

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length > MAX_UPLOAD_BYTES + FORM_BYTES:
            self.refusal = Refusal("", MAX_UPLOAD_BYTES)
            return QueryDict(encoding=encoding), MultiValueDict()  # the body is never read
        return None

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.in_file = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        self.in_file += len(raw_data)
        if self.received > MAX_UPLOAD_BYTES:
            alone = self.in_file > MAX_UPLOAD_BYTES
            self.refusal = Refusal((self.file_name or "") if alone else "", MAX_UPLOAD_BYTES)
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handlers (memory, temporary file) make the file


def read_limited(request: HttpRequest) -> Refusal | None:
    """Read the request's form and files under the limit; the refusal if it stopped.
    Call it before anything else reads request.POST or FILES (the CSRF check included,
    which the view runs after it). Files received before the stop are closed (deleted)."""
    handler = LimitedUploadHandler(request)
    request.upload_handlers.insert(0, handler)
    files = request.FILES  # parses the body: the handler counts and stops it
    if handler.refusal is not None:
        for _field, received in files.lists():
            for upload in received:
                upload.close()
    return handler.refusal
