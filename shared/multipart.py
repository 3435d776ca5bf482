"""A multipart/form-data body (RFC 7578) read in place: the parts' names and byte ranges,
never a copy of the uploaded file.

Transcriptions arrive as multipart uploads; the gateway needs only the small text fields
(model, language, response_format, ...) and where the file lies, to relay the body with the
target's model spliced in (`splice`). Starlette's own form parser spools files to temporary
files (blocking disk I/O on the event loop) and copies them; this reads the bytes the hop
check already holds. Malformed bodies are 400s naming `file`. Shared: the edge reads `model`
with it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.requests import Request

from shared.errors import GatewayError, bad_request
from shared.http import read_body
from shared.names import check_model_name

# OpenAI's upload limit for audio files; the edge and the core refuse bigger uploads with a
# 413 naming `file` while reading them (README: Images and audio).
MAX_AUDIO_BYTES = 25 * 1024 * 1024
MAX_UPLOAD_BYTES = MAX_AUDIO_BYTES + 256 * 1024  # the file plus the multipart framing and fields
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


def text(body: bytes, part: Part) -> str:
    try:
        return body[part.start : part.end].decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request(f"the field {part.name} is not UTF-8", param=part.name[:64]) from None


def splice(body: bytes, part: Part, value: str) -> bytes:
    """`body` with `part`'s content replaced (the target's model id for the client's name)."""
    return b"".join((body[: part.start], value.encode("utf-8"), body[part.end :]))


def model_of(body: bytes, content_type: str | None) -> str:
    """The upload's `model` field, under the model-name rule both tiers share (the edge routes
    on it before relaying the body)."""
    for part in parse(body, boundary_of(content_type)):
        if part.name == "model" and part.filename is None:
            return check_model_name({"model": text(body, part)})
    raise bad_request("model is required", param="model", code="missing_required_parameter")


def name_file(error: GatewayError) -> None:
    """An upload refused for its size is a 413 naming `file` (OpenAI's own answer's param)."""
    if error.status == 413:
        error.param = "file"
        error.message = f"file: {error.message}"


async def read_upload(request: Request, limit: int) -> bytes:
    """A multipart upload, refused with a 413 naming `file` as soon as it passes `limit` (its
    Content-Length first). Held whole: the hop credential signs the body's digest, and the
    core keeps it to fail over (README: Images and audio, for uploads a Lambda edge cannot take)."""
    try:
        return await read_body(request, limit)
    except GatewayError as error:
        name_file(error)
        raise


def relayed_type(content_type: str | None) -> str:
    """The content type the edge relays: a multipart upload's own (its boundary), else JSON."""
    if content_type and content_type.startswith("multipart/form-data"):
        return content_type
    return "application/json"
