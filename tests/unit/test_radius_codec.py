"""The RADIUS codec: RFC 2865 §7.1 example packets, password hiding, reply verification."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest

from saru.checks import radius
from saru.checks.base import CheckFailed

# RFC 2865 §7.1: user "nemo", password "arctangent", secret "xyzzy5461"
SECRET = b"xyzzy5461"
REQUEST_AUTH = bytes.fromhex("0f403f9473978057bd83d5cb98f4227a")
HIDDEN = bytes.fromhex("0dbe708d93d413ce3196e43f782a0aee")
ACCEPT = bytes.fromhex(
    "0200002686fe220e7624ba2a1005f6bf9b55e0b2060600000001"
    "0f06000000000e06c0a80103"
)


def test_rfc2865_password_hiding():
    assert radius.hide_password(b"arctangent", SECRET, REQUEST_AUTH) == HIDDEN
    assert radius.unhide_password(HIDDEN, SECRET, REQUEST_AUTH) == b"arctangent"


@pytest.mark.parametrize("password", [b"", b"x" * 16, b"y" * 17, b"z" * 128])
def test_password_hiding_round_trips_and_pads(password):
    hidden = radius.hide_password(password, SECRET, REQUEST_AUTH)
    assert len(hidden) == max(16, -(-len(password) // 16) * 16)
    assert radius.unhide_password(hidden, SECRET, REQUEST_AUTH) == password


def test_password_too_long():
    with pytest.raises(CheckFailed, match="longer than 128"):
        radius.hide_password(b"p" * 129, SECRET, REQUEST_AUTH)


def test_rfc2865_access_accept_verifies():
    reply = radius.parse_reply(ACCEPT, 0, REQUEST_AUTH, SECRET)
    assert reply == radius.Reply(radius.ACCESS_ACCEPT)
    assert reply.name == "Access-Accept"


def test_reply_with_another_secret_is_refused():
    with pytest.raises(CheckFailed, match="response authenticator mismatch"):
        radius.parse_reply(ACCEPT, 0, REQUEST_AUTH, b"other")


def test_replies_to_other_requests_are_ignored():
    assert radius.parse_reply(ACCEPT, 1, REQUEST_AUTH, SECRET) is None  # other identifier
    assert radius.parse_reply(ACCEPT[:19], 0, REQUEST_AUTH, SECRET) is None  # runt
    assert radius.parse_reply(ACCEPT[:30], 0, REQUEST_AUTH, SECRET) is None  # shorter than its length


def _signed_reply(code: int, ident: int, attributes: bytes, secret: bytes, request_auth: bytes,
                  message_authenticator: bool = False, corrupt_mac: bool = False) -> bytes:
    if message_authenticator:
        attributes += radius.attribute(radius.MESSAGE_AUTHENTICATOR, b"\0" * 16)
    length = 20 + len(attributes)
    head = struct.pack("!BBH", code, ident, length)
    if message_authenticator:
        mac = hmac.new(secret, head + request_auth + attributes, hashlib.md5).digest()
        if corrupt_mac:
            mac = bytes(16)
        attributes = attributes[:-16] + mac
    auth = hashlib.md5(head + request_auth + attributes + secret).digest()
    return head + auth + attributes


def test_access_reject_with_reply_message_and_message_authenticator():
    packet = _signed_reply(radius.ACCESS_REJECT, 9, radius.attribute(radius.REPLY_MESSAGE, b"no way"),
                           SECRET, REQUEST_AUTH, message_authenticator=True)
    reply = radius.parse_reply(packet, 9, REQUEST_AUTH, SECRET)
    assert reply == radius.Reply(radius.ACCESS_REJECT, "no way")
    assert reply.name == "Access-Reject"


def test_bad_message_authenticator_is_refused():
    packet = _signed_reply(radius.ACCESS_ACCEPT, 9, b"", SECRET, REQUEST_AUTH, message_authenticator=True,
                           corrupt_mac=True)
    with pytest.raises(CheckFailed, match="Message-Authenticator mismatch"):
        radius.parse_reply(packet, 9, REQUEST_AUTH, SECRET)


def test_malformed_attributes_are_refused():
    packet = _signed_reply(radius.ACCESS_ACCEPT, 9, b"\x12\x01", SECRET, REQUEST_AUTH)
    with pytest.raises(CheckFailed, match="malformed"):
        radius.parse_reply(packet, 9, REQUEST_AUTH, SECRET)


def test_unknown_codes_are_named():
    assert radius.Reply(radius.ACCESS_CHALLENGE).name == "Access-Challenge"
    assert radius.Reply(42).name == "RADIUS code 42"


def test_access_request_layout_and_message_authenticator():
    packet = radius.access_request(5, REQUEST_AUTH, "nemo", "arctangent", SECRET)
    code, ident, length = struct.unpack("!BBH", packet[:4])
    assert (code, ident, length) == (radius.ACCESS_REQUEST, 5, len(packet))
    assert packet[4:20] == REQUEST_AUTH
    attributes = radius.parse_attributes(packet[20:])
    assert attributes[:3] == [
        (radius.USER_NAME, b"nemo"),
        (radius.USER_PASSWORD, HIDDEN),
        (radius.NAS_IDENTIFIER, b"saru"),
    ]
    kind, mac = attributes[3]
    assert kind == radius.MESSAGE_AUTHENTICATOR
    zeroed = packet[:-16] + b"\0" * 16
    assert mac == hmac.new(SECRET, zeroed, hashlib.md5).digest()


def test_attribute_too_long():
    with pytest.raises(CheckFailed):
        radius.attribute(radius.USER_NAME, b"u" * 254)
