"""The BER codec and the LDAP messages built on it (pure functions, known encodings)."""

from __future__ import annotations

import pytest

from saru.checks import ber, ldap
from saru.checks.base import CheckFailed


@pytest.mark.parametrize(
    ("length", "encoded"),
    [(0, b"\x00"), (127, b"\x7f"), (128, b"\x81\x80"), (255, b"\x81\xff"), (256, b"\x82\x01\x00"),
     (70000, b"\x83\x01\x11\x70")],
)
def test_lengths(length, encoded):
    assert ber.encode_length(length) == encoded
    element = b"\x04" + encoded + b"x" * length
    assert ber.header_size(element) == (1 + len(encoded), length)
    assert ber.element_size(element) == len(element)
    assert ber.element_size(element[:-1]) is None


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, b"\x02\x01\x00"), (1, b"\x02\x01\x01"), (127, b"\x02\x01\x7f"), (128, b"\x02\x02\x00\x80"),
     (256, b"\x02\x02\x01\x00"), (-1, b"\x02\x01\xff"), (-128, b"\x02\x01\x80"), (-129, b"\x02\x02\xff\x7f")],
)
def test_integers(value, encoded):
    assert ber.encode_integer(value) == encoded
    tag, content, end = ber.decode(encoded)
    assert (tag, ber.decode_integer(content), end) == (ber.INTEGER, value, len(encoded))


def test_strings_booleans_sequences():
    assert ber.encode_octets("hé") == b"\x04\x03h\xc3\xa9"
    assert ber.encode_boolean(True) == b"\x01\x01\xff"
    assert ber.encode_boolean(False) == b"\x01\x01\x00"
    seq = ber.encode_sequence(ber.encode_integer(5), ber.encode_octets(b"ab"))
    assert seq == b"\x30\x07\x02\x01\x05\x04\x02ab"
    tag, content, _ = ber.decode(seq)
    assert tag == ber.SEQUENCE
    assert list(ber.children(content)) == [(ber.INTEGER, b"\x05"), (ber.OCTET_STRING, b"ab")]


@pytest.mark.parametrize(
    "data",
    [b"\x30", b"\x30\x80\x00\x00", b"\x1f\x01\x00", b"\x04\x85\x01\x00\x00\x00\x00", b"\x04\x05ab",
     b"\x04\x84\x7f\xff\xff\xff"],
)
def test_malformed_input_raises(data):
    with pytest.raises(ber.BerError):
        ber.decode(data)


def test_header_size_waits_for_more_bytes():
    assert ber.header_size(b"") is None
    assert ber.header_size(b"\x30") is None
    assert ber.header_size(b"\x30\x82\x01") is None


def test_decode_integer_rejects_empty():
    with pytest.raises(ber.BerError):
        ber.decode_integer(b"")


def test_tlv_rejects_high_tag_numbers():
    with pytest.raises(ber.BerError):
        ber.tlv(0x1F)


# ---- LDAP messages --------------------------------------------------------------------------------------

def test_anonymous_bind_request_is_the_classic_encoding():
    # what ldapsearch -x sends: LDAPMessage{1, BindRequest{3, "", simple ""}}
    assert ldap.bind_request(1) == bytes.fromhex("300c020101600702010304008000")


def test_simple_bind_request():
    data = ldap.bind_request(7, "cn=a", "pw")
    assert data == bytes.fromhex("3012020107600d020103") + b"\x04\x04cn=a" + b"\x80\x02pw"


def test_search_request_fields():
    data = ldap.search_request(2, "dc=example,dc=test")
    tag, content, end = ber.decode(data)
    assert (tag, end) == (ber.SEQUENCE, len(data))
    (_, msgid), (op, body) = list(ber.children(content))
    assert (ber.decode_integer(msgid), op) == (2, ldap.SEARCH_REQUEST)
    fields = list(ber.children(body))
    assert fields == [
        (ber.OCTET_STRING, b"dc=example,dc=test"),
        (ber.ENUMERATED, b"\x00"),  # scope baseObject
        (ber.ENUMERATED, b"\x00"),  # neverDerefAliases
        (ber.INTEGER, b"\x00"),
        (ber.INTEGER, b"\x00"),
        (ber.BOOLEAN, b"\x00"),
        (ldap.FILTER_PRESENT, b"objectClass"),
        (ber.SEQUENCE, b"\x04\x031.1"),
    ]


def test_unbind_request():
    assert ldap.unbind_request(3) == bytes.fromhex("30050201034200")


def _result(msgid: int, op: int, code: int, matched: str = "", text: str = "") -> bytes:
    body = ber.encode_sequence(ber.encode_integer(code, ber.ENUMERATED), ber.encode_octets(matched),
                               ber.encode_octets(text), tag=op)
    return ber.encode_sequence(ber.encode_integer(msgid), body)


def test_parse_bind_response():
    message = ldap.parse_message(_result(1, ldap.BIND_RESPONSE, 49, text="bad creds"))
    assert (message.message_id, message.op, message.result_code) == (1, ldap.BIND_RESPONSE, 49)
    assert ldap.describe_result(message) == "invalidCredentials (49): bad creds"


def test_parse_search_result_entry_and_done():
    entry = ber.encode_sequence(
        ber.encode_integer(2),
        ber.encode_sequence(ber.encode_octets("cn=x,dc=t"), ber.encode_sequence(),
                            tag=ldap.SEARCH_RESULT_ENTRY),
    )
    message = ldap.parse_message(entry)
    assert (message.op, message.dn) == (ldap.SEARCH_RESULT_ENTRY, "cn=x,dc=t")
    done = ldap.parse_message(_result(2, ldap.SEARCH_RESULT_DONE, 0))
    assert (done.op, done.result_code) == (ldap.SEARCH_RESULT_DONE, 0)
    assert ldap.describe_result(done) == "success (0)"


def test_parse_message_with_controls_and_unknown_ops():
    referral = ber.encode_sequence(ber.encode_integer(2), ber.encode_sequence(
        ber.encode_octets("ldap://elsewhere/"), tag=ldap.SEARCH_RESULT_REFERENCE))
    assert ldap.parse_message(referral).op == ldap.SEARCH_RESULT_REFERENCE
    with_controls = _result(1, ldap.BIND_RESPONSE, 0)[2:]
    with_controls = ber.encode_sequence(with_controls, ber.encode_sequence(tag=0xA0))
    assert ldap.parse_message(with_controls).result_code == 0


@pytest.mark.parametrize(
    "data",
    [b"\x04\x00", ber.encode_sequence(ber.encode_octets("x")),
     ber.encode_sequence(ber.encode_integer(1), ber.encode_sequence(tag=ldap.BIND_RESPONSE)),
     ber.encode_sequence(ber.encode_integer(1), ber.encode_sequence(tag=ldap.SEARCH_RESULT_ENTRY)),
     _result(1, ldap.BIND_RESPONSE, 0) + b"\x00"],
)
def test_parse_message_rejects_garbage(data):
    with pytest.raises(ber.BerError):
        ldap.parse_message(data)


def test_search_base_and_evaluate():
    assert ldap.search_base("/dc=a") == "dc=a"
    assert ldap.search_base("dc=a") == "dc=a"
    assert ldap.evaluate(["cn=a"], "").ok
    assert ldap.evaluate(["cn=a,dc=b"], r"^cn=a,").ok
    assert ldap.evaluate(["cn=a,dc=b"], r"dc=b\z").ok  # Perl \z
    assert not ldap.evaluate(["cn=a"], "cn=b").ok
    assert ldap.evaluate([], "").message == "search returned 0 entries, expected 1"
    assert not ldap.evaluate(["cn=a", "cn=b"], "").ok
    with pytest.raises(CheckFailed, match="invalid receive pattern"):
        ldap.evaluate(["cn=a"], "(")
