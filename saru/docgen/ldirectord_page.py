"""``saru-ldirectord(8)``: generated from ``saru.cli.ldirectord`` — its docstring, and the verb, option,
environment and exit-status tables its ``--help`` is made from."""

from __future__ import annotations

import re

from saru import __version__
from saru.cli import ldirectord
from saru.docgen import roff

FILES = (
    ("/etc/ha.d/ldirectord.cf", "the default configuration (also looked up under /etc/ha.d/conf/)"),
    ("/var/run/ldirectord.NAME.pid", "the pid file of the instance NAME (the configuration's file name)"),
)

SEE_ALSO = "saru(8), saru.toml(5), ldirectord(8), crm(8)"

INTRO = ("``saru-ldirectord`` runs Saru's director behind the command line of ldirectord 1.186-ha, so that "
         "what drove ldirectord — Pacemaker's ``ocf:heartbeat:ldirectord`` agent, an init script, an "
         "operator's habits — drives Saru unchanged. The configuration file is the same ldirectord.cf. "
         "Like ldirectord:")


def render() -> str:
    summary, *paragraphs = re.split(r"\n\s*\n", (ldirectord.__doc__ or "").strip())
    name_line = re.sub(r"^``saru-ldirectord``:\s*", "", summary.strip())
    description = [p for p in paragraphs if not p.lstrip().startswith(("``saru-ldirectord [", "Environment:"))]
    return roff.page(
        roff.title("SARU-LDIRECTORD", 8, f"saru {__version__}", "System Administration"),
        roff.section("NAME"),
        f"saru\\-ldirectord \\- {roff.inline(name_line)}",
        roff.section("SYNOPSIS"),
        synopsis(),
        roff.section("DESCRIPTION"),
        roff.paragraph(roff.inline(INTRO)),
        *roff.prose("\n\n".join(description)),
        roff.section("OPTIONS"),
        *(roff.tagged(_spellings(term), roff.text(text)) for term, text in ldirectord.OPTIONS),
        roff.section("COMMANDS"),
        *(roff.tagged(roff.bold(verb), roff.text(text)) for verb, text in ldirectord.VERBS),
        roff.section("ENVIRONMENT"),
        *(roff.tagged(roff.bold(name), roff.text(text)) for name, text in ldirectord.ENVIRONMENT),
        roff.section("FILES"),
        *(roff.tagged(roff.italic(path), roff.text(text)) for path, text in FILES),
        roff.section("EXIT STATUS"),
        *(roff.tagged(roff.bold(str(code)), roff.text(text)) for code, text in ldirectord.EXIT_STATUSES),
        roff.section("SEE ALSO"),
        roff.fill(roff.text(SEE_ALSO)),
    )


def synopsis() -> str:
    verbs = "|".join(roff.bold(verb) for verb in ldirectord.COMMANDS)
    run = rf"\fBsaru\-ldirectord\fR [{_spellings('-d|--debug')}] [\fB\-\-\fR] [\fIconfigfile\fR] {verbs}"
    info = " ".join(_spellings(term) for term, _ in ldirectord.OPTIONS if term.startswith(("-h", "-v")))
    return f"{run}\n.br\n\\fBsaru\\-ldirectord\\fR {info}"


def _spellings(term: str) -> str:
    """``-d|--debug`` as bold alternatives; a bare word (``configfile``) in italics."""
    if not term.startswith("-"):
        return roff.italic(term)
    return "|".join(roff.bold(spelling) for spelling in term.split("|"))
