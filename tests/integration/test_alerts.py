"""E-mail alerts delivered to a real OpenSMTPD; hung and absent mail servers never delay the caller."""

from __future__ import annotations

import asyncio
import logging
import stat
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from saru.events import PanicMode, TableChange
from saru.events.alerts import AlertSink
from saru.model import Config, Dest, GlobalConfig, RealConfig, VirtualConfig
from tests.helpers import HungServer, free_port
from tests.servers.smtp import OpenSmtpd, start_opensmtpd

HOST = "director1"


@pytest.fixture
def smtpd(tmp_path: Path) -> Iterator[OpenSmtpd]:
    server = start_opensmtpd(tmp_path / "smtpd")
    try:
        yield server
    finally:
        server.stop()


def virtual(**kwargs) -> VirtualConfig:
    values = {"protocol": "tcp", "address": "127.0.0.10", "port": 80, "emailalert": "ops@example.test",
              "smtp": "127.0.0.1", "reals": (RealConfig("127.0.0.1", 8080),)}
    values.update(kwargs)
    return VirtualConfig(**values)


def config(*virtuals: VirtualConfig, **globals_) -> Config:
    return Config("test.cf", GlobalConfig(**globals_), virtuals)


def change(verb: str, v: VirtualConfig, kind: str = "real", address: str = "127.0.0.1", port: int = 8080,
           weight: int = 0) -> TableChange:
    return TableChange(verb=verb, kind=kind, service=v.key, dest=Dest(address, port, "masq", weight))


async def wait_messages(server: OpenSmtpd, count: int, timeout: float = 10.0) -> list:
    """Poll the maildir (with a deadline) until ``count`` messages were delivered."""
    messages: list = []
    for _ in range(int(timeout / 0.05)):
        messages = server.messages()
        if len(messages) >= count:
            return messages
        await asyncio.sleep(0.05)
    log = server.log_text()[-1500:]
    raise AssertionError(f"{len(messages)} of {count} messages delivered; smtpd log:\n{log}")


async def wait_for(condition, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_alert_arrives_with_ldirectords_subject_body_and_from(smtpd):
    v = virtual(emailalert="ops@example.test, other@example.test", servicename="web shop",
                comment="front end")
    cfg = config(v, emailalertfrom='"LVS Alerts" <lvs@example.test>')
    sink = AlertSink(lambda: cfg, HOST, smtp_port=smtpd.port, username="saru")
    try:
        sink.handle(change("Deleted", v), "running")
        messages = await wait_messages(smtpd, 2)
    finally:
        await sink.close()
    subject = "[web shop] Deleted real server: 127.0.0.1:8080 (127.0.0.10:80)"
    assert {m["Delivered-To"] for m in messages} == {"ops@example.test", "other@example.test"}
    for message in messages:
        assert message["Subject"] == subject
        sender = message["From"].addresses[0]
        assert (sender.display_name, sender.addr_spec) == ("LVS Alerts", "lvs@example.test")
        assert message["To"] == "ops@example.test, other@example.test"
        assert message["Return-Path"] == "<saru@director1>"
        assert message.get_content() == (
            f"ldirectord host: {HOST}\nLog-Message: {subject}\nDaemon-Status: running\n\n"
            "Service name: web shop\nComment: front end\n\n")
    assert (sink.sent, sink.failed) == (1, 0)


async def test_plain_subject_and_default_from_without_servicename(smtpd):
    v = virtual()
    cfg = config(v)
    sink = AlertSink(lambda: cfg, HOST, smtp_port=smtpd.port, username="saru")
    try:
        sink.handle(change("Added", v, weight=3), "starting")
        [message] = await wait_messages(smtpd, 1)
    finally:
        await sink.close()
    subject = "Added real server: 127.0.0.1:8080 (127.0.0.10:80) (Weight set to 3)"
    assert message["Subject"] == subject
    assert message["From"] == "saru@director1"
    body = f"ldirectord host: {HOST}\nLog-Message: {subject}\nDaemon-Status: starting\n"
    assert message.get_content() == body


async def test_emailalertstatus_filters_by_daemon_state(smtpd, caplog):
    caplog.set_level(logging.INFO, logger="saru.events.alerts")
    v = virtual(emailalertstatus=("running",))
    cfg = config(v, v2 := virtual(port=81, emailalertstatus=()))
    sink = AlertSink(lambda: cfg, HOST, smtp_port=smtpd.port)
    try:
        sink.handle(change("Deleted", v, port=1111), "starting")
        sink.handle(change("Deleted", v2, port=2222), "running")  # emailalertstatus=none
        sink.handle(change("Deleted", v, port=3333), "running")
        [message] = await wait_messages(smtpd, 1)
        await sink.close()
    finally:
        await sink.close()
    assert "127.0.0.1:3333" in message["Subject"]
    assert sink.sent == 1
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("emailalert:")] == [
        "emailalert: Deleted real server: 127.0.0.1:3333 (127.0.0.10:80)"]


async def test_reminders_for_a_real_that_stays_down_and_none_for_the_fallback(smtpd):
    v = virtual(emailalertfreq=1)
    cfg = config(v)
    sink = AlertSink(lambda: cfg, HOST, smtp_port=smtpd.port, reminder_tick=0.05)
    sink.start()
    try:
        started = time.monotonic()
        sink.handle(change("Deleted", v), "running")
        sink.handle(change("Deleted", v, kind="fallback", address="127.0.0.99", port=80), "running")
        messages = await wait_messages(smtpd, 3)
        reminder = [m for m in messages if m["Subject"].startswith("Inaccessible")]
        expected = "Inaccessible real server: 127.0.0.1:8080 (127.0.0.10:80)"
        assert [m["Subject"] for m in reminder] == [expected]
        assert time.monotonic() - started >= 1.0
        assert not any("127.0.0.99" in m["Subject"] and "Inaccessible" in m["Subject"] for m in messages)
        sink.handle(change("Restored", v, weight=1), "running")
        assert sink.outages == {}
    finally:
        await sink.close()


async def test_a_hung_mail_server_delays_nothing_and_the_failure_is_logged(caplog):
    caplog.set_level(logging.INFO, logger="saru.events.alerts")
    hung = HungServer()
    v = virtual()
    cfg = config(v)
    sink = AlertSink(lambda: cfg, HOST, smtp_port=hung.port, timeout=0.5, queue_size=2)
    try:
        began = time.perf_counter()
        for port in range(8080, 8085):  # the queue holds 2, the rest is dropped
            sink.handle(change("Deleted", v, port=port), "running")
        assert time.perf_counter() - began < 0.05
        await wait_for(lambda: sink.failed >= 1, timeout=3)
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert errors[0] == ("e-mail alert 'Deleted real server: 127.0.0.1:8080 (127.0.0.10:80)' not sent: "
                             "timeout after 0.5s")
        assert sink.dropped == 3
        assert any("queue full" in r.getMessage() for r in caplog.records)
    finally:
        await sink.close(timeout=0.1)
        hung.close()


async def alert_through(smtpd: OpenSmtpd, role: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Send one alert to ``smtpd``'s listener ``role`` (``""``: the normal one); the errors logged."""
    caplog.set_level(logging.INFO, logger="saru.events.alerts")
    cfg = config(v := virtual())
    sink = AlertSink(lambda: cfg, HOST, smtp_port=smtpd.filtered[role] if role else smtpd.port)
    try:
        sink.handle(change("Deleted", v), "running")
        await wait_for(lambda: sink.sent + sink.failed == 1)
    finally:
        await sink.close()
    return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]


async def test_helo_follows_an_ehlo_the_server_does_not_implement(smtpd, caplog):
    assert await alert_through(smtpd, "old_ehlo", caplog) == []
    [message] = await wait_messages(smtpd, 1)
    assert message["Subject"] == "Deleted real server: 127.0.0.1:8080 (127.0.0.10:80)"


@pytest.mark.parametrize(("role", "reply"), [("refuse_ehlo", "550 5.7.1 go away"),
                                             ("closing", "421 4.3.2 going down")])
async def test_no_helo_after_an_ehlo_refusal_and_the_refusal_is_logged(smtpd, caplog, role: str, reply: str):
    """RFC 5321 §3.2: HELO only when EHLO is not understood (500/502); a refusal (550) or a server
    going away (421) is the answer, reported as such (saru.net.smtp)."""
    errors = await alert_through(smtpd, role, caplog)
    assert errors == [f"e-mail alert 'Deleted real server: 127.0.0.1:8080 (127.0.0.10:80)' not sent: "
                      f"SMTP EHLO {HOST}: {reply}"]
    assert smtpd.messages() == []  # (HELO would have been accepted: only EHLO is filtered)


async def test_a_refused_connection_is_logged():
    cfg = config(v := virtual())
    sink = AlertSink(lambda: cfg, HOST, smtp_port=free_port())
    try:
        sink.handle(change("Deleted", v), "running")
        await wait_for(lambda: sink.failed == 1)
    finally:
        await sink.close()


def fake_sendmail(directory: Path) -> Path:
    """A stand-in sendmail that records its arguments and the message it was handed."""
    path = directory / "sendmail"
    path.write_text(f'#!/bin/sh\necho "$@" > {directory}/argv\ncat > {directory}/message\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


async def test_sendmail_is_used_without_smtp(tmp_path):
    cfg = config(v := virtual(smtp=None))
    sink = AlertSink(lambda: cfg, HOST, sendmail=str(fake_sendmail(tmp_path)))
    try:
        sink.handle(change("Quiescent", v), "stopping")
        await wait_for(lambda: sink.sent + sink.failed == 1)
    finally:
        await sink.close()
    assert sink.sent == 1
    assert (tmp_path / "argv").read_text() == "-t -oi\n"
    text = (tmp_path / "message").read_text()
    assert "\r" not in text
    assert "To: ops@example.test\n" in text
    assert "Daemon-Status: stopping\n" in text


async def test_without_smtp_or_sendmail_it_is_logged_once(tmp_path, caplog):
    cfg = config(v := virtual(smtp=None))
    sink = AlertSink(lambda: cfg, HOST, sendmail=str(tmp_path / "no-sendmail"))
    try:
        sink.handle(change("Deleted", v), "running")
        sink.handle(change("Deleted", v, port=9090), "running")
        await wait_for(lambda: sink.failed == 2)
    finally:
        await sink.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "need smtp=" in errors[0]


async def test_a_purged_virtual_falls_back_to_the_global_settings(smtpd):
    gone = virtual(port=8000)
    cfg = config(virtual(emailalert=""), emailalert="admin@example.test", smtp="127.0.0.1")
    sink = AlertSink(lambda: cfg, HOST, smtp_port=smtpd.port)
    try:
        sink.handle(replace(change("Purged", gone)), "reloading")
        [message] = await wait_messages(smtpd, 1)
    finally:
        await sink.close()
    assert message["Delivered-To"] == "admin@example.test"
    assert "Daemon-Status: reloading" in message.get_content()


async def test_panic_mode_is_mailed_to_the_virtuals_recipients(smtpd):
    v = virtual(servicename="web shop")
    cfg = config(v)
    sink = AlertSink(lambda: cfg, HOST, smtp_port=smtpd.port, username="saru")
    try:
        sink.handle(PanicMode(virtual=v.key, entered=True, down=3, counted=4, threshold=50), "running")
        sink.handle(PanicMode(virtual=v.key, entered=False, down=0, counted=4, threshold=50), "running")
        messages = await wait_messages(smtpd, 2)
    finally:
        await sink.close()
    subjects = sorted(m["Subject"] for m in messages)
    assert subjects[0].startswith("[web shop] ALARM: panic mode for tcp 127.0.0.10:80: 3 of 4 reals")
    assert subjects[1].startswith("[web shop] Panic mode over for tcp 127.0.0.10:80")
