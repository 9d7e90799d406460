"""Mutations of a text or a byte string, drawn by Hypothesis (so that a failure shrinks and replays).

``mutated_text(seeds)``: one of the seed texts with 1-8 edits (delete, insert, replace a character,
duplicate, drop or swap lines, truncate, splice a line of another seed, insert a "nasty" token).
``mutated_bytes(seed)``: the byte-level twin (flip, set, insert, delete, truncate).
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

NASTY = ("\x00", "\r", "\r\n", "\t", "\ufeff", "\u2028", "é", "#", '"', "'", "=", "[", "]", "{", "}", ":",
         "->", ",", "-", "%", "\\", "9" * 30, "-1", "0", "1e309", "nan", "inf", "0x10", "..", "/", " " * 200,
         "a" * 5000, "[[", "]]", "'''", '"""')


@st.composite
def mutated_text(draw: st.DrawFn, seeds: Sequence[str], alphabet: str) -> str:
    text = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(("delete", "insert", "replace", "nasty", "dup_line", "drop_line", "swap",
                                     "cut", "splice")))
        lines = text.split("\n")
        pos = draw(st.integers(0, max(0, len(text) - 1)))
        i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
        if kind == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 8)):]
        elif kind == "insert":
            text = text[:pos] + draw(st.text(alphabet=alphabet, min_size=1, max_size=6)) + text[pos:]
        elif kind == "replace":
            text = text[:pos] + draw(st.sampled_from(alphabet)) + text[pos + 1:]
        elif kind == "nasty":
            text = text[:pos] + draw(st.sampled_from(NASTY)) + text[pos:]
        elif kind == "dup_line":
            lines.insert(i, lines[j])
            text = "\n".join(lines)
        elif kind == "drop_line":
            del lines[i]
            text = "\n".join(lines)
        elif kind == "swap":
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        elif kind == "cut":
            text = text[:pos]
        else:
            other = draw(st.sampled_from(seeds)).split("\n")
            lines.insert(i, other[draw(st.integers(0, len(other) - 1))])
            text = "\n".join(lines)
    return text


@st.composite
def mutated_bytes(draw: st.DrawFn, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(("flip", "set", "insert", "delete", "cut")))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[pos] = draw(st.sampled_from((0, 1, 0x7F, 0x80, 0xFF, draw(st.integers(0, 255)))))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 8))]
        else:
            del data[pos:]
    return bytes(data)
