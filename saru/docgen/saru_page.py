"""``saru(8)``: the man page of the ``saru`` command, generated from its argument parser.

Every command, its synopsis, description and options come from ``saru.cli.main.build_parser()``
(through ``saru.docgen.cli_model``); only the frame around them — the overview, files, environment,
exit statuses — is written here. ``ENVIRONMENT`` must name every ``SARU_*`` variable Saru reads
(tests/unit/test_docgen.py greps the sources for them).
"""

from __future__ import annotations

from saru import __version__
from saru.cli.main import build_parser
from saru.docgen import roff
from saru.docgen.cli_model import Argument, Command, read

MANUAL = "System Administration"

OVERVIEW = (
    "Saru runs the directors of an UltraMonkey-style load balancer: Linux Virtual Server tables kept "
    "in line with live health checks of the real servers. It reads ldirectord's configuration file, "
    "``/etc/ha.d/ldirectord.cf``, unchanged, and its own settings file, ``saru.toml``(5), for what "
    "ldirectord.cf cannot say: the data plane (IPVS, nftables or a userspace proxy), the floating IP "
    "shared by two directors (built-in VRRPv3, or a Pacemaker cluster), IPVS connection "
    "synchronisation and the cluster configuration ``saru cluster`` prints.",
    "Every command that takes ``-c`` accepts either the ldirectord.cf or a saru.toml whose "
    "``[director] config`` names it, and finds the same running daemon through its control socket. "
    "Every command takes ``-h``, ``--help``.",
)

FILES = (
    ("/etc/ha.d/ldirectord.cf", "the virtual and real servers, in ldirectord's language (the default "
                                "configuration of the commands that take -c)"),
    ("/etc/saru/saru.toml", "Saru's own settings; see saru.toml(5)"),
    ("/run/saru/NAME.sock", "the control socket of the daemon running the ldirectord.cf called NAME (as "
                            "root; otherwise under $XDG_RUNTIME_DIR/saru or /tmp/saru-UID), mode 0600"),
    ("/var/log/ldirectord.log", "the default logfile= of ldirectord.cf"),
    ("/var/lib/saru/realserver.json", "what saru realserver apply changed, for --undo"),
)

#: environment variables Saru reads (saru-ldirectord's own are in saru-ldirectord(8))
ENVIRONMENT = (
    ("SARU_RUNTIME_DIR", "directory of the control sockets (default /run/saru for root, else "
                         "$XDG_RUNTIME_DIR/saru, else /tmp/saru-UID)"),
    ("XDG_RUNTIME_DIR", "see SARU_RUNTIME_DIR"),
    ("SARU_STATE_DIR", "directory of the operator's overrides (saru drain, disable, weight) kept across "
                       "restarts (default /var/lib/saru for root, else $XDG_STATE_HOME/saru, else "
                       "~/.local/state/saru)"),
    ("XDG_STATE_HOME", "see SARU_STATE_DIR"),
    ("SARU_DROP_PRIVILEGES", "0: saru run started as root stays root, as --no-drop"),
    ("SARU_COMMAND_USER", "the user external checks and scripts run as when saru.toml's [director] "
                          "command_user is not written (default saru, else nobody)"),
    ("SARU_NFT_LIBRARY", "the libnftables the nftables plane loads (default libnftables.so.1); empty: run "
                         "the nft command instead"),
    ("SARU_API_HEARTBEAT", "seconds between the heartbeat comments of the HTTP API's idle event stream "
                           "(default 15)"),
    ("SARU_PACEMAKER_LOG", "the Pacemaker log whose recent cluster events saru status shows "
                           "(default /var/log/pacemaker/pacemaker.log)"),
    ("SARU_DEMO_KEEP", "when set, saru demo keeps its temporary work directory"),
    ("SARU_LOG_REMINDER_INTERVAL", "seconds between the log reminders of a persistent condition (a vetoed "
                                   "mastership, a real that stays down, a failing reload, a local fault; "
                                   "default 60), for tests and debugging"),
    ("HOSTNAME", "the local host name in ldirectord.cf's checks and alerts, as for ldirectord "
                 "(default: uname's node name)"),
)

EXIT_STATUS = (
    ("0", "success"),
    ("1", "the command failed (for example: a daemon could not start, a check found a problem)"),
    ("2", "bad arguments or an invalid configuration; nothing was changed"),
    ("3", "saru status, saru stop: no daemon answers on the control socket"),
    ("141", "the output went into a pipe that was closed early"),
)

SEE_ALSO = "saru.toml(5), saru-ldirectord(8), ipvsadm(8), ldirectord(8), keepalived(8), crm(8)"


def render() -> str:
    root = read(build_parser())
    return roff.page(
        roff.title("SARU", 8, f"saru {__version__}", MANUAL),
        roff.section("NAME"),
        f"saru \\- {roff.text(root.description)}",
        roff.section("SYNOPSIS"),
        r"\fBsaru\fR \fICOMMAND\fR [\fIOPTIONS\fR]" + "\n.br\n" + r"\fBsaru \-\-version\fR",
        roff.section("DESCRIPTION"),
        *(roff.paragraph(roff.inline(text)) for text in OVERVIEW),
        roff.paragraph("The commands:"),
        *(roff.tagged(roff.bold(sub.path[-1]), roff.inline(sub.summary)) for sub in root.subcommands),
        roff.section("COMMANDS"),
        *(command_block(command) for command in root.walk()[1:]),
        roff.section("FILES"),
        *(roff.tagged(roff.italic(path), roff.text(what)) for path, what in FILES),
        roff.section("ENVIRONMENT"),
        *(roff.tagged(roff.bold(name), roff.text(what)) for name, what in ENVIRONMENT),
        roff.section("EXIT STATUS"),
        roff.paragraph(roff.text("Each command's description says what its statuses mean; in general:")),
        *(roff.tagged(roff.bold(code), roff.text(what)) for code, what in EXIT_STATUS),
        roff.section("SEE ALSO"),
        roff.fill(roff.text(SEE_ALSO)),
    )


def command_block(command: Command) -> str:
    blocks = [roff.subsection(roff.text(command.name)), roff.paragraph(synopsis(command))]
    blocks += roff.prose(command.description)
    if command.subcommands:
        blocks.append(roff.paragraph(roff.text("Its commands:")))
        blocks += [roff.tagged(roff.bold(sub.path[-1]), roff.inline(sub.summary)) for sub in command.subcommands]
    seen: list[str] = []
    for argument in command.arguments:
        if argument.dest == "help":
            continue
        if argument.group not in seen:
            seen.append(argument.group)
            blocks.append(roff.paragraph(roff.bold(_group_title(argument.group)) + ":"))
        blocks.append(roff.tagged(term(argument), roff.inline(argument.help)))
    return "\n".join(blocks)


def _group_title(title: str) -> str:
    if title == "positional arguments":
        return "Arguments"
    return title[:1].upper() + title[1:]


def term(argument: Argument) -> str:
    """How an argument is shown in its option list: ``-c FILE, --config FILE``."""
    if not argument.flags:
        return _value(argument)
    shown = []
    for flag in argument.flags:
        shown.append(roff.bold(flag) + (" " + _value(argument) if argument.takes_value else ""))
    return ", ".join(shown)


def synopsis(command: Command) -> str:
    """``saru run [-c FILE] …`` with argparse's brackets; help and mutually exclusive groups as argparse
    shows them."""
    parts = [roff.bold(command.name)]
    done: set[int] = set()
    arguments = [a for a in command.arguments if a.dest != "help"]
    for argument in arguments:
        if argument.exclusive is not None:
            if argument.exclusive in done:
                continue
            done.add(argument.exclusive)
            members = [a for a in arguments if a.exclusive == argument.exclusive]
            inner = " | ".join(_usage(a, bracket=False) for a in members)
            parts.append(f"({inner})" if argument.exclusive_required else f"[{inner}]")
            continue
        parts.append(_usage(argument, bracket=not argument.required or not argument.flags))
    if command.subcommands:
        parts.append(r"\fITOOL\fR" if command.path else r"\fICOMMAND\fR")
        parts.append("...")
    return " ".join(parts)


def _usage(argument: Argument, bracket: bool) -> str:
    if argument.flags:
        shown = roff.bold(argument.flags[0]) + (" " + _value(argument) if argument.takes_value else "")
        return f"[{shown}]" if bracket else shown
    shown = _value(argument)
    return f"[{shown}]" if argument.nargs in ("?", "*") and bracket else shown


def _value(argument: Argument) -> str:
    if argument.choices:
        single = "|".join(roff.bold(c) for c in argument.choices)
    else:
        single = roff.italic(argument.metavar or argument.dest)
    if argument.nargs == "?" and argument.flags:
        return f"[{single}]"
    if argument.nargs in ("*", "+"):
        return f"{single} ..."
    return single
