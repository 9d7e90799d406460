"""Reader of ldirectord.cf (``/etc/ha.d/ldirectord.cf``): text in, ``saru.model.Config`` out.

The language is ldirectord 4.x's (resource-agents ``ldirectord.in``, ``read_config``): column-0 global
directives, ``virtual=``/``virtual6=`` sections whose lines are indented.  Every configuration ldirectord
accepts with a sensible meaning means the same here; what ldirectord silently misreads is rejected with
a message; docs/compatibility.md lists each deliberate difference, docs/configuration.md the language.

Public API: ``parse_text(text, path)`` and ``parse_file(path)``; both raise ``ConfigError`` listing
every problem found (with ``FILE:LINE``) and put non-fatal findings in ``Config.warnings``.  Host and
service names are resolved once through a ``Resolver`` (the C library's by default); nothing else
touches the network and no file is created.

The package's layers, each pure but ``resolve``: ``lex`` (lines, comments, ``name=value``, quotes),
``values`` (the value grammar: numbers, addresses, ``virtual=``/``real=``), ``directives`` (which
directives exist, where, and how each is read into ``GlobalState``/``BlockState``), ``resolve`` (host
and service look-ups) and ``build`` (defaults, resolution, the model, warnings); this module drives
them line by line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import gc
import os
from collections.abc import Iterator

from saru.config.diagnostics import ConfigError
from saru.config.ldirectord import values as val
from saru.config.ldirectord.build import Builder
from saru.config.ldirectord.directives import (
    ALL_DIRECTIVES,
    GLOBAL_ONLY,
    REMOVED,
    VIRTUAL_ONLY,
    BlockState,
    GlobalState,
    set_block,
    set_global,
)
from saru.config.ldirectord.lex import (
    Line,
    Problem,
    classify,
    clip,
    split_directive,
    split_lines,
    strip_comment,
)
from saru.config.ldirectord.resolve import Resolver, SystemResolver
from saru.model import Config, Diagnostic

#: column-0 directives whose value may contain "#" (ldirectord keeps it there); in every other
#: column-0 value, as everywhere inside a section, "#" outside double quotes starts a comment.
HASH_IS_LITERAL = frozenset(
    {"emailalert", "emailalertfrom", "fallbackcommand", "execute", "maintenancedir", "callback", "logfile"}
)

__all__ = ["ConfigError", "Resolver", "SystemResolver", "parse_file", "parse_text"]


def parse_file(path: str | os.PathLike[str], *, resolver: Resolver | None = None) -> Config:
    """Read and parse a file (UTF-8; any other bytes are read as Latin-1 so comments never fail)."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ConfigError([Diagnostic(name, 0, f"can not open file {name}: {exc.strerror or exc}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return _warn_readable_secrets(parse_text(text, name, resolver=resolver), name)


def _warn_readable_secrets(config: Config, name: str) -> Config:
    """A file every local user can read that holds ``passwd=``/``secret=`` gets a warning (as saru.toml
    with a token does): those are the check accounts' passwords."""
    try:
        readable = os.stat(name).st_mode & 0o004
    except OSError:
        return config
    # (service=ftp's default passwd, ldirectord@HOST, is anonymous FTP's e-mail address, no secret)
    if not readable or not any(v.secret or (v.passwd and not v.passwd.startswith("ldirectord@"))
                               for v in config.virtuals):
        return config
    warning = Diagnostic(name, 0, "file is world-readable and holds check passwords (passwd=/secret=): chmod o-r "
                                  "(and make it readable by the daemon's user, e.g. chgrp saru)", "warning")
    return dataclasses.replace(config, warnings=(*config.warnings, warning))


def parse_text(text: str, path: str = "<string>", *, resolver: Resolver | None = None) -> Config:
    """Parse ldirectord.cf text; ``path`` is only used in diagnostics and ``Config.path``."""
    reader = _Reader(path, resolver or SystemResolver())
    lines = split_lines(text)
    with _no_cycle_collection():
        for number, raw in enumerate(lines, start=1):
            reader.feed(classify(number, raw))
        return reader.finish(max(1, len(lines)))


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause the cyclic garbage collector while the (acyclic) config objects are built: with 100,000
    virtuals its repeated passes over the growing heap were a third of the parse time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Reader:
    """Line-by-line state machine: global lines, and the virtual section being read."""

    def __init__(self, path: str, resolver: Resolver) -> None:
        self.builder = Builder(path, resolver)
        self.globals = GlobalState()
        self.blocks: list[BlockState] = []
        self.block: BlockState | None = None
        self.bad_block = False  # the current section's virtual= line was rejected

    def feed(self, line: Line) -> None:
        if line.kind in ("blank", "comment"):
            return
        try:
            if "\0" in line.body:  # no path, program, argument or check string can hold one
                raise Problem("the line contains a NUL byte")
            if line.kind == "block":
                self._block_line(line)
            else:
                self._global_line(line)
        except Problem as exc:
            self.builder.error(line.number, str(exc))

    def finish(self, last_line: int) -> Config:
        return self.builder.build(self.globals, self.blocks, last_line)

    # -- column 0 ---------------------------------------------------------------------------------

    def _global_line(self, line: Line) -> None:
        # until the line is known to be sane, the indented lines after it are not reported again
        self.block, self.bad_block = None, True
        name, value = split_directive(line.body)
        if value is not None and name not in HASH_IS_LITERAL:
            value = strip_comment(value, anywhere=True).rstrip()
        if name in ("virtual", "virtual6"):
            self._start_block(line, name, value)
            return
        _check_known(name)
        self.bad_block = False
        if name in VIRTUAL_ONLY:
            raise Problem(f'"{name}" belongs to a virtual section: indent it under a virtual= line')
        for warning in set_global(self.globals, name, value, line.number, self.builder.global_fallback):
            self.builder.warn(line.number, warning)

    def _start_block(self, line: Line, name: str, value: str | None) -> None:
        ipv6 = name == "virtual6"
        self.bad_block = True  # until the address is known to be valid
        spec = val.virtual(value or "", ipv6)
        if spec.fwmark is not None:
            protocol = "fwm"
        else:
            assert spec.port is not None
            protocol = "udp" if spec.port.text in ("53", "domain") else "tcp"
        self.block = BlockState(line.number, ipv6, spec, protocol, self.builder.resolver.hostname())
        self.blocks.append(self.block)
        self.bad_block = False

    # -- inside a virtual section -----------------------------------------------------------------

    def _block_line(self, line: Line) -> None:
        if self.block is None and self.bad_block:
            return  # the section's virtual= line already got an error
        name, value = split_directive(line.body)
        if self.block is None:
            raise Problem(
                f'indented line outside a virtual section: "{clip(line.body)}" '
                "(global directives start in column 0; section lines follow a virtual= line)"
            )
        if name in ("virtual", "virtual6"):
            raise Problem(f"{name}= must start in column 0")
        _check_known(name)
        if name in GLOBAL_ONLY:
            raise Problem(f'"{name}" is a global directive: write it in column 0, outside virtual sections')
        for warning in set_block(self.block, name, value, line.number):
            self.builder.warn(line.number, warning)


def _check_known(name: str) -> None:
    if name in REMOVED:
        raise Problem(REMOVED[name])
    if name not in ALL_DIRECTIVES:
        close = difflib.get_close_matches(name, sorted(ALL_DIRECTIVES), n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        raise Problem(f'unknown directive "{clip(name)}"{hint}')
