"""Logging set-up in ldirectord's formats.

* ``logfile="/path"``: ``[<ctime>|<cfgname>|<pid>] <message>`` appended to the file;
* ``logfile="local0"`` (any name without a leading ``/``): syslog with that facility, ident
  ``ldirectord``-style (``saru``), priority info — or stderr with a warning when ``/dev/log`` is absent;
* ``supervised=yes`` or ``saru run --stderr``: ``[<ctime>] <message>`` on standard output/error.

All of Saru logs through the ``saru`` logger; this module only attaches handlers to it.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time
from typing import TextIO

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
                handler: logging.Handler = logging.FileHandler(logfile, delay=False)
                handler.setFormatter(LdirectordFileFormatter(cfgname))
                LOGGER.addHandler(handler)
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
