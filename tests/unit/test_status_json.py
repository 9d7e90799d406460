"""``saru.api.status_json.StatusEncoder``: the status document's text, reusing what did not change, is
byte for byte ``json.dumps`` of the document, request after request, whatever changed in between
(a real's check, a virtual's own field, reals added or gone, virtuals added or gone, the daemon's
fields before and after the virtuals)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saru.api.status_json import StatusEncoder, dumps


def real(i: int, at: float = 1.0) -> dict[str, Any]:
    return {"server": f"10.0.0.{i}:80", "address": f"10.0.0.{i}", "port": 80, "weight": 1, "status": "UP",
            "last_check": {"ok": True, "result_class": "L7OK", "message": "HTTP 200 OK", "latency": 0.01, "at": at},
            "operator": None, "transitions": [{"time": 1.0, "to": "up", "reason": "ok"}]}


def document(virtuals: int = 3, reals: int = 4) -> dict[str, Any]:
    return {"version": "1", "pid": 7, "config": "/etc/x.cf", "drift": None,
            "virtuals": [{"proxy": f"tcp/10.0.1.{v}:80", "in_table": True, "connections": 0,
                          "reals": [real(i) for i in range(reals)]} for v in range(virtuals)],
            "ha": None, "events": ["started"], "cluster_events": []}


CHANGES = st.lists(st.tuples(st.integers(0, 7), st.integers(0, 9), st.integers(0, 9)), max_size=12)


@settings(max_examples=50, deadline=None)
@given(st.lists(CHANGES, min_size=1, max_size=5))
def test_the_text_is_json_dumps_of_the_document_request_after_request(requests: list) -> None:
    encoder = StatusEncoder()
    doc = document()
    for changes in requests:
        doc = copy.deepcopy(doc)  # the service makes a new document for each request
        for kind, a, b in changes:
            virtuals = doc["virtuals"]
            v = virtuals[a % len(virtuals)] if virtuals else None
            if kind == 0 and v and v["reals"]:
                v["reals"][b % len(v["reals"])]["last_check"]["at"] = float(a * 10 + b)
            elif kind == 1 and v:
                v["connections"] = a + b
            elif kind == 2 and v:
                v["reals"].append(real(a + b, float(b)))
            elif kind == 3 and v and v["reals"]:
                v["reals"].pop(b % len(v["reals"]))
            elif kind == 4:
                virtuals.append({"proxy": f"udp/10.0.2.{a}:53", "in_table": False, "connections": b, "reals": []})
            elif kind == 5 and virtuals:
                virtuals.pop(a % len(virtuals))
            elif kind == 6:
                doc["events"].append(f"event {a} \u00e9 \"quoted\"")
            elif v:
                v["extra"] = b  # a field after "reals": no longer the shape kept, still the same text
        assert encoder.encode(doc) == dumps(doc) == json.dumps(doc, allow_nan=False, default=str)


def test_documents_of_other_shapes_and_nan() -> None:
    encoder = StatusEncoder()
    assert encoder.encode({"virtuals": []}) == dumps({"virtuals": []})
    assert encoder.encode({"virtuals": [], "x": 1}) == dumps({"virtuals": [], "x": 1})
    assert encoder.encode({"a": 1, "virtuals": [3], "b": 2}) == dumps({"a": 1, "virtuals": [3], "b": 2})
    doc = document(1, 1)
    doc["virtuals"][0]["reals"][0]["last_check"]["latency"] = float("nan")
    with pytest.raises(ValueError):
        encoder.encode(doc)
