"""E-mail alerts: message building and reminder bookkeeping (pure functions)."""

from __future__ import annotations

import email
import email.policy

from hypothesis import given
from hypothesis import strategies as st

from saru.events import TableChange
from saru.events.alerts import (
    AlertSettings,
    alert_body,
    alert_subject,
    build_message,
    dot_stuff,
    due_reminders,
    recipients,
    track_outage,
)
from saru.model import Config, Dest, GlobalConfig, ServiceKey, VirtualConfig

VIP = ServiceKey("tcp", "127.0.0.10", 80)


def change(verb: str, kind: str = "real", port: int = 8080, weight: int = 0) -> TableChange:
    return TableChange(verb=verb, kind=kind, service=VIP, dest=Dest("127.0.0.1", port, "gate", weight))


def test_subject_is_prefixed_only_with_a_servicename():
    assert alert_subject("Deleted real server: a (b)", "shop") == "[shop] Deleted real server: a (b)"
    assert alert_subject("Deleted real server: a (b)", None) == "Deleted real server: a (b)"


def test_body_as_ldirectord_writes_it():
    assert alert_body("lb1", "S", "running", None, None) == (
        "ldirectord host: lb1\nLog-Message: S\nDaemon-Status: running\n")
    assert alert_body("lb1", "S", "stopping", "shop", "the comment") == (
        "ldirectord host: lb1\nLog-Message: S\nDaemon-Status: stopping\n\n"
        "Service name: shop\nComment: the comment\n\n")
    body = alert_body("lb1", "S", "reloading", None, "only a comment")
    assert body.endswith("\n\nComment: only a comment\n\n")


def test_recipients_are_split_on_commas():
    assert recipients("a@example.test, b@example.test,c@example.test") == [
        "a@example.test", "b@example.test", "c@example.test"]
    assert recipients("") == []


def test_message_headers_and_body():
    raw = build_message('"LVS" <lvs@example.test>', "a@example.test, b@example.test", "[shop] Deleted x",
                        "line 1\nline 2\n", "lb1.example.test", date=0)
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"] == "[shop] Deleted x"
    assert message["To"] == "a@example.test, b@example.test"
    assert message["Message-ID"].endswith("@lb1.example.test>")
    assert message.get_content().replace("\r\n", "\n") == "line 1\nline 2\n"


def test_non_ascii_subject_is_encoded_and_header_injection_impossible():
    raw = build_message("x@example.test", "y@example.test", "Dienst für Kunden\r\nBcc: evil@example.test",
                        "Grüße\n", "lb1")
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"] == "Dienst für Kunden Bcc: evil@example.test"
    assert message["Bcc"] is None
    assert message.get_content().replace("\r\n", "\n") == "Grüße\n"


def test_dot_stuffing():
    assert dot_stuff(b"a\r\n.b\r\n..\r\n") == b"a\r\n..b\r\n...\r\n"
    assert dot_stuff(b"no newline") == b"no newline\r\n"


@given(st.lists(st.text(alphabet="ab.\n", max_size=8), max_size=6))
def test_dot_stuffing_is_reversible(lines):
    raw = "\r\n".join(line.replace("\n", "") for line in lines).encode() + b"\r\n"
    stuffed = dot_stuff(raw)
    assert b"\r\n.\r\n" not in b"\r\n" + stuffed
    unstuffed = b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n"
                         for line in stuffed.split(b"\r\n")[:-1])
    assert unstuffed == raw


def test_outages_start_on_delete_or_quiescent_and_end_on_add_or_restore():
    outages: dict = {}
    track_outage(outages, change("Deleted"), 60, now=100.0)
    track_outage(outages, change("Quiescent", port=8081), 60, now=100.0)
    assert set(outages) == {(VIP, ("127.0.0.1", 8080)), (VIP, ("127.0.0.1", 8081))}
    track_outage(outages, change("Changed", port=8081, weight=0), 60, now=110.0)
    assert outages[(VIP, ("127.0.0.1", 8081))][0] == 100.0
    track_outage(outages, change("Restored", weight=1), 60, now=120.0)
    track_outage(outages, change("Purged", port=8081), 60, now=120.0)
    assert outages == {}


def test_no_outage_without_frequency_or_for_the_fallback():
    outages: dict = {}
    track_outage(outages, change("Deleted"), 0, now=1.0)
    track_outage(outages, change("Deleted", kind="fallback", port=80), 60, now=1.0)
    track_outage(outages, TableChange(verb="Deleted", kind="virtual", service=VIP), 60, now=1.0)
    assert outages == {}


def test_due_reminders_and_their_reset():
    outages: dict = {}
    track_outage(outages, change("Deleted"), 10, now=100.0)
    assert due_reminders(outages, lambda _: 10, now=105.0) == []
    assert due_reminders(outages, lambda _: 10, now=110.0) == [
        ("Inaccessible real server: 127.0.0.1:8080 (127.0.0.10:80)", VIP)]
    assert due_reminders(outages, lambda _: 10, now=115.0) == []
    assert len(due_reminders(outages, lambda _: 10, now=120.0)) == 1
    assert due_reminders(outages, lambda _: 0, now=200.0) == [] and outages == {}


def test_settings_of_a_virtual_or_of_the_globals_when_it_is_gone():
    v = VirtualConfig(protocol="tcp", address="127.0.0.10", port=80, emailalert="v@example.test",
                      emailalertfreq=5, servicename="shop", comment="c")
    cfg = Config("t.cf", GlobalConfig(emailalert="g@example.test", smtp="mail"), (v,))
    expected = AlertSettings("v@example.test", 5, v.emailalertstatus, None, "shop", "c")
    assert AlertSettings.of(cfg, VIP) == expected
    gone = AlertSettings.of(cfg, ServiceKey("tcp", "127.0.0.10", 81))
    assert (gone.emailalert, gone.smtp, gone.servicename) == ("g@example.test", "mail", None)
    assert AlertSettings.of(None, VIP) == AlertSettings()
