"""The pure parts of the dns check: what is asked, and how an answer is judged."""

from __future__ import annotations

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from saru.checks import dns as check
from saru.checks.base import CheckFailed


@pytest.mark.parametrize(
    ("request_", "name", "rdtype"),
    [
        ("/www.example.test", "www.example.test.", dns.rdatatype.A),
        ("www.example.test", "www.example.test.", dns.rdatatype.A),
        ("/192.0.2.20", "20.2.0.192.in-addr.arpa.", dns.rdatatype.PTR),
        ("/2001:db8::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
         dns.rdatatype.PTR),
    ],
)
def test_query_for(request_, name, rdtype):
    qname, qtype = check.query_for(request_)
    assert (qname.to_text(), qtype) == (name, rdtype)


@pytest.mark.parametrize("request_", ["/", "", "/  "])
def test_empty_request(request_):
    with pytest.raises(CheckFailed, match="request is empty"):
        check.query_for(request_)


def _response(question: str, rdtype: str, *records: tuple[str, str, str]) -> dns.message.Message:
    query = dns.message.make_query(question, rdtype)
    response = dns.message.make_response(query)
    for name, kind, value in records:
        response.answer.append(dns.rrset.from_text(name, 60, "IN", kind, value))
    return response


def test_answers_keep_a_and_ptr_only():
    response = _response("www.example.test", "A",
                         ("www.example.test", "CNAME", "real.example.test."),
                         ("real.example.test", "A", "192.0.2.10"))
    assert check.answers(response) == ["192.0.2.10"]
    ptr = _response("20.2.0.192.in-addr.arpa", "PTR", ("20.2.0.192.in-addr.arpa", "PTR", "rev.example.test."))
    assert check.answers(ptr) == ["rev.example.test"]


def test_evaluate():
    response = _response("www.example.test", "A", ("www.example.test", "A", "192.0.2.10"),
                         ("www.example.test", "A", "192.0.2.11"))
    assert check.evaluate(response, r"\.11$").message == "answer 192.0.2.11"
    result = check.evaluate(response, "^10\\.")
    assert not result.ok
    assert result.message == "receive pattern '^10\\.' matches no answer (192.0.2.10, 192.0.2.11)"
    assert check.evaluate(_response("x.test", "A"), ".").message == "no A or PTR record in the answer"
    nx = _response("x.test", "A")
    nx.set_rcode(dns.rcode.NXDOMAIN)
    assert (check.evaluate(nx, ".").ok, check.evaluate(nx, ".").message) == (False, "answer NXDOMAIN")
    with pytest.raises(CheckFailed, match="invalid receive pattern"):
        check.evaluate(response, "[")
