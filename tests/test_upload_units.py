"""The streamed upload's pure parts: the hop's streamed mode and its chained frames, the
streaming multipart scanner (checked against the whole-body parser and the stdlib's MIME
parser, however the body is cut into chunks), the canonical content an Idempotency-Key
fingerprints, and the spool (memory, then an unlinked temporary file, closed on every path)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from pathlib import Path

import pytest

from core.api.audio.spool import Spool
from shared import hop, multipart
from shared.errors import GatewayError
from shared.hop_stream import MAX_FRAME_BYTES, BrokenChain, Deframer, Framer
from shared.multipart_stream import PartScanner, canonical
from shared.secret import Secret
from tests.support.fake_media import make_wav, read_form

KEY = hop.HopKey(b"k" * 40)
IDENTITY = hop.HopIdentity("acme", "default", "*", int(time.time()) + 600)
PATH = "/v1/audio/transcriptions"


def streamed(key: hop.HopKey = KEY) -> tuple[str, bytes]:
    return hop.sign_streamed(key, IDENTITY, "POST", PATH, "req_1")


def frames_of(seed: bytes, chunks: list[bytes]) -> list[bytes]:
    framer = Framer(seed)
    out = [b"".join(framer.frames(chunk)) for chunk in chunks]
    return [*out, framer.close()]


def deframe(seed: bytes, wire: bytes, cut: int = 997) -> bytes:
    deframer = Deframer(seed)
    out = b"".join(b"".join(deframer.feed(wire[at : at + cut])) for at in range(0, len(wire), cut))
    deframer.finish()
    return out


# ---- the hop's streamed mode -----------------------------------------------------------------


def test_the_core_derives_the_edges_chain_key() -> None:
    credential, seed = streamed()
    claims = hop.authenticate(KEY, credential, "POST", PATH, "req_1")
    assert claims is not None and claims.streamed and claims.stream_seed == seed
    assert "stream_seed" not in repr(claims)  # derived from the secret: never printed
    whole = hop.authenticate(
        KEY, hop.sign(KEY, IDENTITY, "POST", PATH, "r", b"x"), "POST", PATH, "r"
    )
    assert whole is not None and not whole.streamed and whole.stream_seed is None
    # Each credential (its own nonce) chains its own frames.
    assert streamed()[1] != seed


def test_the_chain_key_follows_a_rotating_secret() -> None:
    """Mid-rotation the core accepts the previous value too: the chain key is derived from the
    value that made the credential's MAC."""
    old = hop.HopKey(b"o" * 40)
    credential, seed = streamed(old)

    class Rotating(Secret):
        def accepted(self) -> tuple[str, ...]:
            return ("n" * 40, "o" * 40)

    verifier = hop.HopKey(Rotating("n" * 40))
    claims = hop.authenticate(verifier, credential, "POST", PATH, "req_1")
    assert claims is not None and claims.stream_seed == seed


def test_frames_round_trip_however_they_are_cut() -> None:
    _, seed = streamed()
    data = os.urandom(MAX_FRAME_BYTES * 2 + 123)
    wire = b"".join(frames_of(seed, [data[:10], data[10:]]))
    for cut in (1, 36, 997, 65536, len(wire)):
        assert deframe(seed, wire, cut) == data


@pytest.mark.parametrize(
    "tamper",
    [
        lambda f: [f[0], f[1][:-1] + bytes([f[1][-1] ^ 1]), *f[2:]],
        lambda f: f[:-1],
        lambda f: [f[1], f[0], *f[2:]],
        lambda f: [f[0], *f[2:]],
        lambda f: [*f, f[0]],
        lambda f: [f[0], f[1][:-5]],
        lambda f: [(MAX_FRAME_BYTES + 1).to_bytes(4, "big") + bytes(32)],
    ],
    ids=["altered", "truncated", "reordered", "dropped", "trailing", "cut", "overlong"],
)
def test_any_change_breaks_the_chain(tamper: object) -> None:
    _, seed = streamed()
    frames = frames_of(seed, [b"a" * 100, b"b" * 100, b"c" * 100])
    with pytest.raises(BrokenChain):
        deframe(seed, b"".join(tamper(frames)))  # type: ignore[operator]


def test_frames_from_another_request_do_not_verify() -> None:
    _, seed = streamed()
    _, other = streamed()
    spliced = frames_of(other, [b"x" * 100])
    with pytest.raises(BrokenChain):
        deframe(seed, b"".join(spliced))


# ---- the streaming multipart scanner ---------------------------------------------------------


TYPE = "multipart/form-data; boundary=b0undary"


def body(*parts: tuple[str, str | None, bytes], boundary: str = "b0undary") -> bytes:
    out = b""
    for name, filename, content in parts:
        extra = f'; filename="{filename}"' if filename else ""
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{extra}\r\n'
        if filename:
            head += "Content-Type: audio/wav\r\n"
        out += head.encode() + b"\r\n" + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def scan(raw: bytes, seed: int, boundary: bytes = b"b0undary") -> PartScanner:
    """`raw` fed in random cuts (a boundary may straddle any of them)."""
    chooser = random.Random(seed)
    scanner = PartScanner(boundary)
    at = 0
    while at < len(raw):
        step = chooser.choice((1, 2, 7, 13, 64, 4096))
        scanner.feed(raw[at : at + step])
        at += step
    scanner.finish()
    return scanner


@pytest.mark.parametrize("seed", range(8))
def test_the_scanner_agrees_with_the_whole_body_parsers(seed: int) -> None:
    audio = make_wav(0.5) + b"\r\n--b0undar" + b"\r\n-" * 40  # near-boundaries inside the file
    raw = body(
        ("model", None, b"whisper"),
        ("language", None, "en-ü".encode()),
        ("file", "a.wav", audio),
        ("prompt", None, b""),
    )
    scanned = scan(raw, seed).parts
    whole = multipart.parse(raw, multipart.boundary_of(TYPE))
    assert [(p.name, p.filename, p.start, p.end) for p in scanned] == [
        (p.name, p.filename, p.start, p.end) for p in whole
    ]
    form = read_form(TYPE, raw)
    for part in scanned:
        if part.is_file:
            assert bytes(part.head) == audio[:4096] and part.end - part.start == len(audio)
        else:
            assert part.value == form[part.name]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"--b0undary\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b0undary--",
        b'--b0undary\r\nContent-Disposition: form-data; name="a"\r\n\r\nno end',
        b"--b0undary\r\nno headers end",
        b"preamble--b0undary--",
        b"--b0undary\r\n\r\nheaderless\r\n--b0undary--",
        b"--b0undary" + b"x" * 10,
    ],
)
def test_malformed_bodies_are_a_400_naming_file(raw: bytes) -> None:
    scanner = PartScanner(b"b0undary")
    with pytest.raises(GatewayError) as refused:
        scanner.feed(raw)
        scanner.finish()
    assert (refused.value.status, refused.value.param) == (400, "file")


def test_an_over_long_field_is_refused_while_it_streams() -> None:
    scanner = PartScanner(b"b0undary")
    scanner.feed(b'--b0undary\r\nContent-Disposition: form-data; name="prompt"\r\n\r\n')
    with pytest.raises(GatewayError) as refused:
        for _ in range(100):
            scanner.feed(b"p" * 4096)
    assert refused.value.param == "prompt"


def test_canonical_content_ignores_the_boundary_and_field_order() -> None:
    audio = make_wav(0.2)
    first = body(("model", None, b"w"), ("language", None, b"en"), ("file", "a.wav", audio))
    retry = body(
        ("language", None, b"en"), ("file", "a.wav", audio), ("model", None, b"w"), boundary="Zz9"
    )
    other = body(("model", None, b"w"), ("language", None, b"en"), ("file", "a.wav", audio + b"!"))
    key = canonical(scan(first, 1).parts)
    assert key == canonical(scan(retry, 2, b"Zz9").parts)
    assert key != canonical(scan(other, 3).parts)


# ---- the spool -------------------------------------------------------------------------------


def _descriptors() -> set[str]:
    found = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            found.add(os.readlink(fd))
    return {name for name in found if "interlock-upload-" in name}


def _names(directory: Path) -> list[str]:
    return os.listdir(directory)


def test_the_spool_keeps_small_uploads_in_memory_and_large_ones_in_an_unlinked_file(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        small = Spool(1024, str(tmp_path))
        await small.write(b"a" * 1000)
        await small.seal()
        assert _descriptors() == set()
        assert b"".join([c async for c in small.chunks(10, 20)]) == b"a" * 10
        small.close()

        data = os.urandom(3 * 1024 * 1024 + 5)
        large = Spool(1024, str(tmp_path))
        for at in range(0, len(data), 65536):
            await large.write(data[at : at + 65536])
        await large.seal()
        assert len(_descriptors()) == 1 and _names(tmp_path) == []
        assert b"".join([c async for c in large.chunks(0, large.size)]) == data
        assert await large.read(100, 10) == data[100:110]
        large.close()
        large.close()  # idempotent
        assert _descriptors() == set()

    asyncio.run(run())


def test_a_spool_closed_mid_write_closes_its_file_after_the_write(tmp_path: Path) -> None:
    async def run() -> None:
        spool = Spool(16, str(tmp_path))
        await spool.write(b"x" * 32)  # now a file
        writing = asyncio.ensure_future(spool.write(b"y" * 4 * 1024 * 1024))
        await asyncio.sleep(0)
        writing.cancel()  # the request ended under it
        spool.close()
        with pytest.raises(asyncio.CancelledError):
            await writing
        for _ in range(200):
            if not _descriptors():
                break
            await asyncio.sleep(0.01)
        assert _descriptors() == set()

    asyncio.run(run())
