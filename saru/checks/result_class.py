"""The class of a check result in HAProxy's words (pure): ``L4OK``, ``L4CON``, ``L4TOUT``, ``L7OK``,
``L7RSP``, ``L7STS``, ``L7TOUT`` or ``SOCKERR`` — what ``saru_server_check_status`` and the API show.

The classes say how far a check got: layer 4 (the connection: refused/reset/unreachable is ``L4CON``,
no answer in time ``L4TOUT``), layer 7 (the protocol: a bad status ``L7STS``, any other wrong or
missing answer ``L7RSP``, no answer in time ``L7TOUT``), or no further than a local socket
(``SOCKERR``: the director could not even make one). Connect and ping checks are layer 4; every
other check (negotiate, external, combined's negotiate leg) is layer 7. A TLS failure counts as
``L7RSP`` (HAProxy's ``L6RSP``; kept out of the set so that every real has the same eight series).

The class is read from the result's message, the one readable reason every check gives
(``saru.checks.base.describe_error`` and the checks' own texts).
"""

from __future__ import annotations

from saru.model import CheckResult

#: every class, in the order the metrics list them
CLASSES = ("L4OK", "L4CON", "L4TOUT", "L7OK", "L7RSP", "L7STS", "L7TOUT", "SOCKERR")

#: checktypes whose check stops at the connection (or an echo): layer 4
LAYER4 = frozenset({"connect", "ping"})

#: ``describe_error``'s texts for a connection the peer or the network refused
_REFUSED = ("connection refused", "connection reset by peer", "no route to host", "network is unreachable",
            "host is unreachable", "host is down")
#: texts of a connection that got no answer
_NO_ANSWER = ("connection timed out",)
#: texts of a failure on the director's side: no socket to check with
_LOCAL = ("address not available", "too many open files", "cannot assign requested address",
          "name resolution failed", "no buffer space available", "operation not permitted")


def result_class(result: CheckResult, checktype: str = "negotiate") -> str:
    """The HAProxy class of one check result of a check of ``checktype`` (see the module docstring)."""
    layer4 = checktype in LAYER4
    if result.ok:
        return "L4OK" if layer4 else "L7OK"
    message = result.message.lower()
    if message.startswith(_LOCAL):
        return "SOCKERR"
    if message.startswith(_NO_ANSWER):
        return "L4TOUT"
    if message.startswith("timeout after"):
        return "L4TOUT" if layer4 else "L7TOUT"
    if message.startswith(_REFUSED):
        return "L4CON"
    if layer4:
        return "L4CON"
    if message.startswith("http ") and message[5:8].isdigit():
        return "L7STS"
    return "L7RSP"
