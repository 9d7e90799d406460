"""Logging set-up in ldirectord's formats.

* ``logfile="/path"``: ``[<ctime>|<cfgname>|<pid>] <message>`` appended to the file; the file is
  followed through log rotation (moved or deleted: the next line opens a new one at the path, as
  ldirectord, which opened the file per line) and ``reopen_log_files()`` (the daemon's SIGUSR1)
  reopens it at once;
* ``logfile="local0"`` (any name without a leading ``/``): syslog with that facility, ident
  ``ldirectord``-style (``saru``), priority info — or stderr with a warning when ``/dev/log`` is absent;
* ``supervised=yes`` or ``saru run --stderr``: ``[<ctime>] <message>`` on standard output/error.

All of Saru logs through the ``saru`` logger; this module only attaches handlers to it.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import sys
import time
from typing import TextIO

from saru.files import open_append

LOGGER = logging.getLogger("saru")

SYSLOG_FACILITIES = logging.handlers.SysLogHandler.facility_names


class LdirectordFileFormatter(logging.Formatter):
    """``[Tue Nov 24 21:03:42 2026|ld3.cf|26507] message``."""

    def __init__(self, cfgname: str) -> None:
        super().__init__()
        self.cfgname = cfgname

    def format(self, record: logging.LogRecord) -> str:
        return f"[{time.ctime(record.created)}|{self.cfgname}|{record.process}] {record.getMessage()}"


class ConsoleFormatter(logging.Formatter):
    """``[Tue Nov 24 21:03:42 2026] message`` (ldirectord's supervised format)."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"[{time.ctime(record.created)}] {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class LogFileHandler(logging.handlers.WatchedFileHandler):
    """Appends to a file, reopening it when it was moved or deleted (logrotate); a file that cannot be
    (re)opened or written loses lines with one message on stderr, never an exception in the caller."""

    def __init__(self, path: str) -> None:
        super().__init__(path, delay=False)
        self._failing = False

    def _open(self) -> io.TextIOWrapper:
        """The file, opened without following a symbolic link planted at its name (``saru.files``)."""
        return open(open_append(self.baseFilename), "a", encoding=self.encoding, errors=self.errors)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.reopenIfNeeded()
            logging.FileHandler.emit(self, record)  # opens the file if an earlier reopen failed
        except OSError as exc:
            if not self._failing:
                self._failing = True
                print(f"saru: cannot write log file {self.baseFilename}: {exc.strerror or exc}; "
                      "lines are lost until it can be opened", file=sys.stderr)
            return
        self._failing = False

    def reopen(self) -> None:
        """Close the file and open the one at the path now (``OSError`` if it cannot be opened)."""
        self.acquire()
        try:
            self.dev = self.ino = -1  # whatever is at the path now counts as a new file
            if self.stream is None:
                self.stream = self._open()
                self._statstream()
            else:
                self.reopenIfNeeded()
        finally:
            self.release()


def reopen_log_files() -> list[str]:
    """Reopen every log file of the ``saru`` logger (after a rotation); returns their paths."""
    reopened = []
    for handler in LOGGER.handlers:
        if isinstance(handler, LogFileHandler):
            try:
                handler.reopen()
            except OSError as exc:
                print(f"saru: cannot reopen log file {handler.baseFilename}: {exc.strerror or exc}",
                      file=sys.stderr)
                continue
            reopened.append(handler.baseFilename)
    return reopened


def _syslog_handler(facility: str) -> logging.Handler | None:
    if not os.path.exists("/dev/log"):
        return None
    handler = logging.handlers.SysLogHandler(address="/dev/log", facility=SYSLOG_FACILITIES[facility])
    handler.ident = f"saru[{os.getpid()}]: "
    return handler


def configure_logging(
    logfile: str | None,
    cfgname: str,
    console: TextIO | None = None,
    debug: bool = False,
) -> list[str]:
    """Attach handlers to the ``saru`` logger; returns warnings about the log destination."""
    warnings: list[str] = []
    for handler in list(LOGGER.handlers):
        LOGGER.removeHandler(handler)
        handler.close()
    LOGGER.setLevel(logging.DEBUG if debug else logging.INFO)
    LOGGER.propagate = False
    if logfile:
        if logfile.startswith("/"):
            try:
                file_handler = LogFileHandler(logfile)
                file_handler.setFormatter(LdirectordFileFormatter(cfgname))
                LOGGER.addHandler(file_handler)
            except OSError as exc:
                warnings.append(f"cannot write log file {logfile}: {exc.strerror}; logging to stderr")
                console = console or sys.stderr
        elif logfile in SYSLOG_FACILITIES:
            syslog = _syslog_handler(logfile)
            if syslog is None:
                warnings.append(f"syslog facility {logfile}: /dev/log is absent; logging to stderr")
                console = console or sys.stderr
            else:
                LOGGER.addHandler(syslog)
    if console is not None:
        stream = logging.StreamHandler(console)
        stream.setFormatter(ConsoleFormatter())
        LOGGER.addHandler(stream)
    for warning in warnings:
        LOGGER.warning(warning)
    return warnings
