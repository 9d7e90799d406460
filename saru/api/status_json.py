"""``GET /api/v1/status``'s JSON text, with each virtual's and each real's part kept between requests.

With 10,000 reals the document is some 5 MB of JSON, and between two requests a few hundred reals
changed. ``StatusEncoder.encode(doc)`` writes exactly ``json.dumps(doc)`` (with the API's options:
no NaN, ``str()`` of anything else): the document is the one ``saru status --json`` prints, made by
the service layer; what is kept is text. A real whose part of the document equals the one last
written (a dictionary comparison, in C) reuses that text; a virtual whose every real (and its own
fields) did reuses the virtual's; only the rest is encoded again, by ``json.dumps``. The pieces are
joined with the separators ``json.dumps`` writes (``, `` and ``: ``), so the text is byte for byte
``json.dumps(doc)``'s (tests/unit/test_status_json.py holds the two to it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def dumps(value: object) -> str:
    """The API's JSON (no NaN or infinity; ``str()`` of what JSON has no type for)."""
    return json.dumps(value, allow_nan=False, default=str)


class _Virtual:
    __slots__ = ("head", "real_texts", "reals", "text")

    def __init__(self) -> None:
        self.head: dict[str, Any] | None = None  # the virtual's fields but its reals
        self.reals: list[Mapping[str, Any]] = []
        self.real_texts: list[str] = []
        self.text = ""


class StatusEncoder:
    """``json.dumps`` of status documents, reusing the text of the parts that did not change."""

    def __init__(self) -> None:
        self._virtuals: list[_Virtual] = []

    def encode(self, doc: Mapping[str, Any]) -> str:
        virtuals = doc.get("virtuals")
        if not isinstance(virtuals, list) or not doc or list(doc)[-1] == "virtuals":
            return dumps(doc)
        keys = list(doc)
        at = keys.index("virtuals")
        before = dumps({k: doc[k] for k in keys[:at]}) if at else ""
        after = dumps({k: doc[k] for k in keys[at + 1:]})
        middle = f'"virtuals": [{", ".join(self._encode_virtuals(virtuals))}]'
        return f"{before[:-1]}, {middle}, {after[1:]}" if at else f"{{{middle}, {after[1:]}"

    def _encode_virtuals(self, virtuals: Sequence[Any]) -> list[str]:
        kept = self._virtuals
        if len(kept) != len(virtuals):
            kept = self._virtuals = [_Virtual() for _ in virtuals]
        texts: list[str] = []
        for part, virtual in zip(kept, virtuals, strict=True):
            if not isinstance(virtual, dict) or list(virtual)[-1:] != ["reals"] or not isinstance(
                    virtual["reals"], list):
                part.head = None
                texts.append(dumps(virtual))
                continue
            reals = virtual["reals"]
            if part.head is not None and part.reals == reals and len(part.head) == len(virtual) - 1 and all(
                    part.head.get(k, part) == v for k, v in virtual.items() if k != "reals"):
                texts.append(part.text)
                continue
            head = {k: v for k, v in virtual.items() if k != "reals"}
            if len(part.reals) != len(reals):
                part.reals, part.real_texts = [{}] * len(reals), [""] * len(reals)
            for i, real in enumerate(reals):
                if real != part.reals[i] or not part.real_texts[i]:
                    part.real_texts[i] = dumps(real)
            part.reals = list(reals)
            part.head = head
            part.text = f'{dumps({**head, "reals": []})[:-3]}[{", ".join(part.real_texts)}]}}'
            texts.append(part.text)
        return texts
