"""``saru.api.blocks``: which ``Accept-Encoding`` values get gzip; the CRC-32 combined from the
blocks' is zlib's of the whole; the gzip answer made of pieces compressed block by block reads back
as the blocks' text, with Python's gzip (one member, nothing after it) and with curl ``--compressed``
over a real aiohttp server, answer after answer as blocks change."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import subprocess
import zlib

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from saru.api.blocks import Block, Gzipped, accepts_gzip, crc32_combine, send_blocks
from tests.helpers import require


@pytest.mark.parametrize(("header", "gzip_ok"), [
    ("gzip", True),  # Prometheus's
    ("gzip, deflate", True),
    ("deflate, GZip;q=0.5", True),
    ("x-gzip", True),
    ("*", True),
    ("identity", False),
    ("", False),
    ("deflate, br", False),
    ("gzip;q=0", False),
    ("gzip;q=0.000, *", False),
    ("*, gzip;q=0", False),
    ("*;q=0", False),
    ("gzip;q=nonsense", False),
])
def test_accepts_gzip(header: str, gzip_ok: bool) -> None:
    assert accepts_gzip(header) is gzip_ok


@given(st.binary(max_size=300), st.binary(max_size=3000))
def test_crc32_combine_is_zlibs_crc_of_the_whole(a: bytes, b: bytes) -> None:
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def read_one_member(data: bytes) -> bytes:
    member = zlib.decompressobj(16 + zlib.MAX_WBITS)
    text = member.decompress(data)
    assert member.eof and not member.unused_data
    return text


@given(st.lists(st.lists(st.integers(0, 6), max_size=12), min_size=1, max_size=5))
def test_answers_read_back_as_the_blocks_text(answers: list[list[int]]) -> None:
    """Answers of blocks drawn from a few, kept or new objects, in any order (the CRCs kept from the
    last answer are used only for its leading blocks that are the same objects)."""
    texts = [b"", b"# HELP a x\n# TYPE a gauge\n", b'a{x="1"} 1.0\n' * 2000, "é\n".encode(), b"b 2\n", b"c 3\n" * 7,
             b'd{x="2"} 2.0\n' * 20000]
    kept = [Block(t) for t in texts]
    gzipped = Gzipped()
    for picks in answers:
        blocks = [kept[i] if i % 2 else Block(texts[i]) for i in picks]
        assert read_one_member(gzipped.answer(blocks)) == b"".join(texts[i] for i in picks)


async def test_curl_compressed_reads_the_answer() -> None:
    require(shutil.which("curl") is not None, "curl is not installed")
    texts = [b"line %d\n" % i * 500 for i in range(40)]
    blocks = [Block(t) for t in texts]
    gzipped = Gzipped()

    async def handle(request: web.Request) -> web.StreamResponse:
        return await send_blocks(request, blocks, {"Content-Type": "text/plain"}, gzipped)

    app = web.Application()
    app.router.add_get("/", handle)
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("/"))
        for args in (["--compressed"], [], ["--compressed"]):
            blocks[7] = Block(b"changed\n")
            head, _, body = (await _run(["curl", "-sS", "-D", "-", *args, url])).partition(b"\r\n\r\n")
            assert body == b"".join(b.text for b in blocks)
            assert (b"content-encoding: gzip" in head.lower()) is bool(args)
        packed = await _run(["curl", "-sS", "-H", "Accept-Encoding: gzip", url])
        assert gzip.decompress(packed) == read_one_member(packed) == b"".join(b.text for b in blocks)


async def _run(argv: list[str]) -> bytes:
    process = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE)
    out, _ = await process.communicate()
    assert process.returncode == 0, argv
    return out
