"""multipart/form-data (RFC 7578): the rules both tiers read uploads by.

Transcriptions arrive as multipart uploads; the gateway needs only the small text fields
(model, language, response_format, ...) and where the file lies, to relay the body with the
target's model spliced in. Neither tier holds an upload whole: they scan it as it streams
(shared/multipart_stream.py, which shares the boundary and header rules here). `parse` is the
whole-body reading of the same rules, kept as the reference the streaming scanner is tested
against. Starlette's own form parser is not used: it spools files to temporary files with
blocking disk I/O on the event loop. Malformed bodies are 400s naming `file`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.errors import GatewayError, bad_request

MAX_PARTS = 64  # a transcription has about ten fields; more is not a client of this API
MAX_FIELD_BYTES = 64 * 1024  # text fields (a prompt is the longest: 224 tokens at OpenAI)
_BOUNDARY = re.compile(r'boundary="?([0-9A-Za-z\'()+_,./:=?-]{1,70})"?')
_NAME = re.compile(rb'\bname="([^"]*)"')
_FILENAME = re.compile(rb'\bfilename="([^"]*)"')


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    filename: str | None
    content_type: str | None
    start: int  # the part's content, body[start:end]
    end: int


def boundary_of(content_type: str | None) -> bytes:
    if not content_type or not content_type.lower().startswith("multipart/form-data"):
        raise bad_request(
            "the request must be multipart/form-data with a file part",
            param="file",
            code="invalid_content_type",
        )
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise bad_request("multipart/form-data without a boundary", param="file")
    return match.group(1).encode("ascii")


def _malformed(why: str) -> GatewayError:
    return bad_request(f"the multipart body is malformed: {why}", param="file")


def _header(head: bytes) -> tuple[str, str | None, str | None]:
    name = filename = content_type = None
    for line in head.split(b"\r\n"):
        key, _, value = line.partition(b":")
        key = key.strip().lower()
        if key == b"content-disposition":
            found = _NAME.search(value)
            name = found.group(1).decode("utf-8", "replace") if found else None
            file = _FILENAME.search(value)
            filename = file.group(1).decode("utf-8", "replace") if file else None
        elif key == b"content-type":
            content_type = value.strip().decode("latin-1")
    if name is None:
        raise _malformed("a part without a name")
    return name, filename, content_type


def parse(body: bytes, boundary: bytes) -> list[Part]:
    """The parts of `body`, in order (offsets into it)."""
    delimiter = b"--" + boundary
    if not body.startswith(delimiter):
        raise _malformed("it does not start with its boundary")
    parts: list[Part] = []
    at = len(delimiter)
    separator = b"\r\n" + delimiter
    while body.startswith(b"\r\n", at):
        head_end = body.find(b"\r\n\r\n", at + 2)
        if head_end < 0:
            raise _malformed("a part without headers")
        name, filename, content_type = _header(body[at + 2 : head_end])
        start = head_end + 4
        end = body.find(separator, start)
        if end < 0:
            raise _malformed("a part without a closing boundary")
        if filename is None and end - start > MAX_FIELD_BYTES:
            raise bad_request(f"the field {name} is too long", param=name[:64])
        parts.append(Part(name, filename, content_type, start, end))
        if len(parts) > MAX_PARTS:
            raise _malformed(f"more than {MAX_PARTS} parts")
        at = end + len(separator)
    if not body.startswith(b"--", at):
        raise _malformed("it does not end with its closing boundary")
    return parts


def name_file(error: GatewayError) -> None:
    """An upload refused for its size is a 413 naming `file` (OpenAI's own answer's param)."""
    if error.status == 413:
        error.param = "file"
        error.message = f"file: {error.message}"


def relayed_type(content_type: str | None) -> str:
    """The content type the edge relays: a multipart upload's own (its boundary), else JSON."""
    if content_type and content_type.startswith("multipart/form-data"):
        return content_type
    return "application/json"
