"""A check result's class in HAProxy's words (``L4OK``, ``L7STS``, …), decided in one place (pure).

The API's status document, the dashboard and the ``saru_server_check_status`` metric all name the
last check's outcome with ``result_class(result)``, so an operator reads the same word everywhere
and HAProxy dashboards map onto it:

=========  ==========================================================================
``L4OK``   a connect or ping check succeeded
``L4TOUT`` a connect or ping check timed out (no SYN-ACK, no echo reply)
``L4CON``  the connection could not be made (refused, reset, unreachable), any check
``SOCKERR`` another socket or resolver error (or a check that failed unexpectedly)
``L6RSP``  the TLS handshake failed
``L7OK``   a protocol check (http, smtp, dns, sql, …) got the answer it wants
``L7TOUT`` a protocol check timed out (connected, no complete answer in time)
``L7STS``  the server answered with an error status (HTTP/SIP not 2xx)
``L7RSP``  a wrong or malformed answer (receive pattern not found, bad reply, login refused)
``PROCOK`` / ``PROCERR`` / ``PROCTOUT``  an external check's command succeeded / failed / timed out
``UNK``    no check ran (not checked yet, ``checktype=on``/``off``, ``service=none``, maintenance)
=========  ==========================================================================
"""

from __future__ import annotations

from saru.model import CheckResult

#: every class ``result_class`` can return (the metric's ``state`` label values)
RESULT_CLASSES: tuple[str, ...] = (
    "L4OK", "L4TOUT", "L4CON", "SOCKERR", "L6RSP", "L7OK", "L7TOUT", "L7STS", "L7RSP",
    "PROCOK", "PROCERR", "PROCTOUT", "UNK",
)


def result_class(result: CheckResult | None) -> str:
    """The class of one check result (``UNK`` for None or a result no check produced)."""
    if result is None or not result.layer:
        return "UNK"
    layer, failure = result.layer, result.failure
    if layer == "PROC":
        return "PROCOK" if result.ok else "PROCTOUT" if failure == "timeout" else "PROCERR"
    if result.ok:
        return "L4OK" if layer == "L4" else "L7OK"
    if failure == "connect":
        return "L4CON"
    if failure == "socket":
        return "SOCKERR"
    if failure == "timeout":
        return "L4TOUT" if layer == "L4" else "L7TOUT"
    if layer == "L4":  # a connect/ping check has no answer to judge: anything else is a socket error
        return "SOCKERR"
    if failure == "tls":
        return "L6RSP"
    if failure == "status":
        return "L7STS"
    return "L7RSP"
