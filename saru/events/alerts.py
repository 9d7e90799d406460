"""E-mail alerts (``emailalert``…): ldirectord's mails for table changes, sent in the background.

``AlertSink.handle(event, daemon_state)`` receives the daemon's ``TableChange`` and ``PanicMode``
events; changes of real and fallback servers, and a virtual entering or leaving panic mode
(``panic_threshold``: its table is kept although most reals fail), become mails when the virtual's
``emailalert`` is set and its ``emailalertstatus`` contains the daemon's state. ``handle`` only
queues (bounded queue): one background task delivers, with a timeout, so a slow or dead mail server
never delays checks or table changes; failures are logged.

What a mail looks like follows ldirectord (``ld_emailalert_send``): subject ``[<servicename>] <log
message>`` (no brackets without a servicename), body ``ldirectord host:`` / ``Log-Message:`` /
``Daemon-Status:`` and, when set, ``Service name:`` / ``Comment:``; envelope sender
``<user>@<hostname>``; From ``emailalertfrom`` verbatim or the envelope sender.

Transport: ``smtp=<host>`` → Saru's SMTP client (``saru.net.smtp``, shared with the smtp checks) to
port 25 (no TLS or AUTH, like ldirectord's Net::SMTP; EHLO, HELO only when EHLO is answered 500/502);
without ``smtp=``, ``/usr/sbin/sendmail -t -oi`` exec'd without a shell (``saru.subproc``), else a
logged explanation.

Reminders: a real deleted or quiesced is remembered; every ``emailalertfreq`` seconds while it
stays out an "Inaccessible real server: <rip:port> (<vip:port>)" mail is sent (filtered like the
others). Adding or restoring it ends the reminders; fallback servers never get any (ldirectord #251).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.header import Header
from email.utils import formatdate, make_msgid

from saru.checks.base import describe_error
from saru.events.types import Event, PanicMode, TableChange
from saru.model import Config, ServiceKey, VirtualConfig
from saru.net.smtp import SMTPClient, SMTPError, stream_lines
from saru.net.smtp import dot_stuff as dot_stuff  # this module's name before saru.net.smtp
from saru.subproc import last_line, run_command

log = logging.getLogger(__name__)

SMTP_PORT = 25
SENDMAIL = "/usr/sbin/sendmail"
SEND_TIMEOUT = 30.0  # seconds one mail may take (connect to QUIT)
QUEUE_SIZE = 100  # mails waiting at most; more are dropped (and logged)
REMINDER_TICK = 1.0  # seconds between looks at the reminder list
DAEMON_STATES = ("starting", "running", "stopping", "reloading")


class MailError(Exception):
    """A mail could not be handed over (short readable reason)."""


# --------------------------------------------------------------------------------------------------
# Pure parts: settings, message building, reminder bookkeeping
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertSettings:
    """The e-mail settings in force for one virtual (its own, else the global ones)."""

    emailalert: str = ""
    emailalertfreq: int = 0
    emailalertstatus: tuple[str, ...] = DAEMON_STATES
    smtp: str | None = None
    servicename: str | None = None
    comment: str | None = None

    @staticmethod
    def of(config: Config | None, service: ServiceKey) -> AlertSettings:
        """Settings for ``service``; a virtual gone from the config (purged) gets the global ones."""
        if config is None:
            return AlertSettings()
        virtual: VirtualConfig | None = config.virtual(service)
        source = virtual if virtual is not None else config.globals
        return AlertSettings(
            emailalert=source.emailalert,
            emailalertfreq=source.emailalertfreq,
            emailalertstatus=source.emailalertstatus,
            smtp=source.smtp,
            servicename=virtual.servicename if virtual else None,
            comment=virtual.comment if virtual else None,
        )


def recipients(emailalert: str) -> list[str]:
    """The addresses of ``emailalert`` ("a@b, c@d")."""
    return [address.strip() for address in emailalert.split(",") if address.strip()]


def alert_subject(message: str, servicename: str | None) -> str:
    """ldirectord's subject: the log message, prefixed by ``[servicename]`` when one is set."""
    return f"[{servicename}] {message}" if servicename else message


def alert_body(hostname: str, subject: str, daemon_state: str, servicename: str | None,
               comment: str | None) -> str:
    """ldirectord's body (``\\n`` line ends)."""
    body = f"ldirectord host: {hostname}\nLog-Message: {subject}\nDaemon-Status: {daemon_state}\n"
    extra = f"Service name: {servicename}\n" if servicename else ""
    extra += f"Comment: {comment}\n" if comment else ""
    return body + (f"\n{extra}\n" if extra else "")


def _header_value(value: str) -> str:
    value = " ".join(value.splitlines())  # never a header injection
    return value if value.isascii() else Header(value, "utf-8").encode()


def build_message(sender: str, to: str, subject: str, body: str, hostname: str,
                  date: float | None = None) -> bytes:
    """An RFC 5322 message (CRLF line ends, UTF-8 text body)."""
    domain = hostname if "." in hostname else None
    headers = [
        ("From", _header_value(sender)),
        ("To", _header_value(to)),
        ("Subject", _header_value(subject)),
        ("Date", formatdate(date, localtime=True)),
        ("Message-ID", make_msgid("saru", domain=domain)),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Transfer-Encoding", "8bit"),
    ]
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    text = "\r\n".join(body.splitlines()) + "\r\n"
    return (head + "\r\n" + text).encode("utf-8")


#: reals remembered for reminders: (service, (address, port)) → (time of the last mail, "rip:port")
Outages = dict[tuple[ServiceKey, tuple[str, int]], tuple[float, str]]


def track_outage(outages: Outages, change: TableChange, frequency: int, now: float) -> None:
    """ldirectord's reminder bookkeeping for one table change (``%EMAILSTATUS``)."""
    if change.dest is None or change.kind == "virtual":
        return
    key = (change.service, change.dest.key)
    out = change.kind == "real" and change.verb in ("Quiescent", "Deleted")
    if change.verb == "Changed" and change.dest.weight == 0:
        return  # still out (or quiescent by configuration): nothing changes
    if out and frequency > 0:
        outages[key] = (now, change.dest.hostport)
    else:
        outages.pop(key, None)


def due_reminders(outages: Outages, frequency: Callable[[ServiceKey], int],
                  now: float) -> list[tuple[str, ServiceKey]]:
    """(message, virtual) of the reminders due at ``now`` (their time is reset); outages without a
    frequency are forgotten."""
    due: list[tuple[str, ServiceKey]] = []
    for key, (since, hostport) in list(outages.items()):
        freq = frequency(key[0])
        if freq <= 0:
            del outages[key]
        elif now - since >= freq:
            outages[key] = (now, hostport)
            due.append((f"Inaccessible real server: {hostport} ({key[0].hostport})", key[0]))
    return due


# --------------------------------------------------------------------------------------------------
# Transports
# --------------------------------------------------------------------------------------------------


async def send_smtp(host: str, port: int, helo: str, sender: str, to: list[str], message: bytes,
                    timeout: float = SEND_TIMEOUT) -> None:
    """Deliver ``message`` through an SMTP server (``saru.net.smtp``: EHLO, HELO when EHLO is not
    understood; no TLS, no AUTH); ``MailError`` says why not."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            client = SMTPClient(stream_lines(reader), writer)
            client.require(await client.reply(), 220)
            client.require(await client.hello(helo), 250)
            for reason in await client.send_mail(sender, to, message):
                log.warning("e-mail alert recipient refused: %s", reason)
            await client.quit()
        except SMTPError as exc:
            raise MailError(str(exc)) from None
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def send_sendmail(path: str, message: bytes, timeout: float = SEND_TIMEOUT) -> None:
    """Hand ``message`` to ``<path> -t -oi`` (recipients from its To header), exec'd without a shell
    (``saru.subproc``: killed with its process group when it takes longer than ``timeout``)."""
    outcome = await run_command([path, "-t", "-oi"], timeout, input=message.replace(b"\r\n", b"\n"), grace=0)
    if outcome.timed_out:
        raise TimeoutError(f"{path} killed after {timeout}s")
    if outcome.returncode:
        detail = last_line(outcome.stderr)
        reason = f"{path} exited with status {outcome.returncode}"
        raise MailError(reason + (f": {detail}" if detail else ""))


# --------------------------------------------------------------------------------------------------
# The sink
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    """One alert ready to send."""

    subject: str
    to: str
    message: bytes
    smtp: str | None
    queued: float = field(default_factory=time.monotonic)


def _default_username() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


class AlertSink:
    """Turns table changes into e-mail alerts, delivered by a background task; see the module doc.

    ``config`` returns the configuration in force, ``state`` the daemon's state (starting, running,
    stopping or reloading) for mails whose caller gives none (the reminders).
    """

    def __init__(
        self,
        config: Callable[[], Config | None],
        hostname: str | None = None,
        *,
        state: Callable[[], str] = lambda: "running",
        username: str | None = None,
        smtp_port: int = SMTP_PORT,
        sendmail: str = SENDMAIL,
        timeout: float = SEND_TIMEOUT,
        queue_size: int = QUEUE_SIZE,
        reminder_tick: float = REMINDER_TICK,
    ) -> None:
        self._config = config
        self._state = state
        self.hostname = hostname or socket.gethostname()
        self.username = username or _default_username()
        self.smtp_port = smtp_port
        self.sendmail = sendmail
        self.timeout = timeout
        self.reminder_tick = reminder_tick
        self._queue: asyncio.Queue[Mail] = asyncio.Queue(maxsize=max(1, queue_size))
        self.outages: Outages = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._no_transport_logged = False
        self._busy = 0  # mails being delivered right now
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    # ---- API for the daemon --------------------------------------------------------------------

    def handle(self, event: Event, daemon_state: str | None = None) -> None:
        """Queue the alert for ``event`` if it is a real/fallback change or a panic that should be mailed."""
        if isinstance(event, PanicMode):
            self._queue_alert(event.message(), AlertSettings.of(self._config(), event.virtual),
                              daemon_state or self._state())
            return
        if not isinstance(event, TableChange) or event.kind not in ("real", "fallback") or event.dest is None:
            return
        settings = AlertSettings.of(self._config(), event.service)
        track_outage(self.outages, event, settings.emailalertfreq, time.monotonic())
        self._queue_alert(event.message(), settings, daemon_state or self._state())

    def start(self) -> None:
        """Start the delivery and reminder tasks (from inside the running loop; idempotent)."""
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._deliver_loop(), name="alerts"),
                       loop.create_task(self._reminder_loop(), name="alert-reminders")]

    async def close(self, timeout: float = 5.0) -> None:
        """Stop reminding, give queued mails up to ``timeout`` seconds, then stop."""
        if not self._tasks:
            return
        deliver, reminders = self._tasks
        reminders.cancel()
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            log.warning("e-mail alerts: %d mails not sent at shutdown", self._queue.qsize() + self._busy)
        deliver.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def send_reminders(self) -> int:
        """Queue the reminders that are due now (the reminder task calls this every tick)."""
        config = self._config()
        settings: dict[ServiceKey, AlertSettings] = {}

        def frequency(service: ServiceKey) -> int:
            if service not in settings:
                settings[service] = AlertSettings.of(config, service)
            if config is not None and config.virtual(service) is None:
                return 0  # the virtual is gone: nothing to remind about
            return settings[service].emailalertfreq

        due = due_reminders(self.outages, frequency, time.monotonic())
        state = self._state()
        for message, service in due:
            self._queue_alert(message, settings[service], state)
        return len(due)

    # ---- internals -----------------------------------------------------------------------------

    def _queue_alert(self, message: str, settings: AlertSettings, daemon_state: str) -> None:
        if daemon_state not in settings.emailalertstatus or not settings.emailalert:
            return
        log.info("emailalert: %s", message)
        subject = alert_subject(message, settings.servicename)
        body = alert_body(self.hostname, subject, daemon_state, settings.servicename, settings.comment)
        sender = f"{self.username}@{self.hostname}"
        config = self._config()
        header_from = (config.globals.emailalertfrom if config else None) or sender
        mail = Mail(subject, settings.emailalert,
                    build_message(header_from, settings.emailalert, subject, body, self.hostname),
                    settings.smtp)
        try:
            self._queue.put_nowait(mail)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("e-mail alert queue full (%d waiting): not sending %r", self._queue.qsize(), subject)
            return
        if not self._tasks:
            with contextlib.suppress(RuntimeError):  # no running loop: start() will pick it up
                self.start()

    async def _deliver_loop(self) -> None:
        while True:
            mail = await self._queue.get()
            self._busy = 1
            try:
                if await self._deliver(mail):
                    self.sent += 1
                else:
                    self.failed += 1
            except asyncio.CancelledError:
                raise
            except (MailError, OSError) as exc:  # TimeoutError is an OSError
                self.failed += 1
                reason = str(exc) if isinstance(exc, MailError) else describe_error(exc, self.timeout)
                log.error("e-mail alert %r not sent: %s", mail.subject, reason)
            except Exception:
                self.failed += 1
                log.exception("e-mail alert %r not sent", mail.subject)
            finally:
                self._busy = 0
                self._queue.task_done()

    async def _deliver(self, mail: Mail) -> bool:
        """Send one mail; False when there is no transport (logged once)."""
        if mail.smtp:
            sender = f"{self.username}@{self.hostname}"
            await send_smtp(mail.smtp, self.smtp_port, self.hostname, sender, recipients(mail.to),
                            mail.message, self.timeout)
        elif os.access(self.sendmail, os.X_OK):
            await send_sendmail(self.sendmail, mail.message, self.timeout)
        else:
            if not self._no_transport_logged:
                self._no_transport_logged = True
                log.error("e-mail alerts need smtp=<host>: no smtp= is configured and there is no %s; "
                          "alerts are not sent", self.sendmail)
            return False
        return True

    async def _reminder_loop(self) -> None:
        while True:
            await asyncio.sleep(self.reminder_tick)
            try:
                self.send_reminders()
            except Exception:
                log.exception("e-mail alert reminders failed")
