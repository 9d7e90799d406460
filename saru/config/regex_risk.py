"""Which ``receive=`` regular expressions can backtrack catastrophically (pure, a heuristic).

Python's ``re`` (like Perl's) is a backtracking engine: a quantifier over something that itself
repeats — ``(a+)+$``, ``(\\w*)*x``, ``(a|ab)*c`` — can take time exponential in the length of the
text it fails to match, and a 27-byte body is enough to stall a process for seconds.
``backtracking_risk(pattern)`` names the first such construct it finds, or None:

* a repeated group whose body repeats (**nested quantifier**), or contains an alternation
  (**quantified alternation**);
* a **backreference** (``\\1``, ``(?P=name)``), which no linear engine can match.

The config reader warns (``file:line: warning``) about a risky pattern; the checks match such a
pattern away from the event loop under a time limit (``saru.checks.receive``). A pattern the
heuristic passes is matched in place: it has no nested repetition, so its matching time grows
polynomially (at worst) with the body, which the checks bound in size.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

#: seconds a risky pattern may take to match one body before the check fails (``saru.checks.receive``)
RECEIVE_MATCH_LIMIT = 1.0
#: Python's own regex parser (``re._parser``, Python 3.11+: no public API parses a pattern to its tree)
sre: Any = importlib.import_module("re._parser")
_REPEATS = {sre.MAX_REPEAT, sre.MIN_REPEAT} | ({sre.POSSESSIVE_REPEAT} if hasattr(sre, "POSSESSIVE_REPEAT") else set())


def _perlish(pattern: str) -> str:
    """Enough of the Perl-only syntax made Python's for parsing (``\\z``, ``(?<name>``, ``\\k<name>``)."""
    text = re.sub(r"\\z", r"\\Z", pattern)
    text = re.sub(r"\(\?<(?![=!])", "(?P<", text)
    return re.sub(r"\\k<(\w+)>", r"(?P=\1)", text)


def _walk(items: Any, repeated: bool) -> str | None:
    for op, av in items:
        if op in _REPEATS:
            _low, high, body = av
            repeats = high > 1
            if repeated and repeats:
                return "nested quantifier"
            found = _walk(body, repeated or repeats)
            if found:
                return found
        elif op is sre.SUBPATTERN:
            found = _walk(av[-1], repeated)
            if found:
                return found
        elif op is sre.BRANCH:
            if repeated:
                return "quantified alternation"
            for branch in av[1]:
                found = _walk(branch, repeated)
                if found:
                    return found
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            found = _walk(av[1], repeated)
            if found:
                return found
        elif op in (sre.GROUPREF, sre.GROUPREF_EXISTS):
            return "backreference"
    return None


def backtracking_risk(pattern: str) -> str | None:
    """The construct that makes ``pattern`` risky ("nested quantifier", "quantified alternation",
    "backreference"), or None (also for a pattern that does not parse: that is another error)."""
    try:
        parsed = sre.parse(_perlish(pattern))
    except (re.error, RecursionError, OverflowError):
        return None
    return _walk(parsed, False)
