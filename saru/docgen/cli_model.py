"""The ``saru`` command line as plain data, read from its argparse parser: what the man page and the
bash completion are generated from.

argparse keeps its structure in private attributes (``_actions``, ``_action_groups``,
``_mutually_exclusive_groups``, a sub-parsers action's ``_choices_actions``); this module is the one
place that reads them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

#: metavars whose value is a file name / a directory name (for completion)
FILE_METAVARS = frozenset({"FILE", "SARU.TOML", "PATH"})
DIR_METAVARS = frozenset({"DIR"})


@dataclass(frozen=True)
class Argument:
    """One option or positional argument."""

    flags: tuple[str, ...]  # empty for a positional
    dest: str
    metavar: str | None  # None: the option takes no value
    nargs: str | int | None
    choices: tuple[str, ...]
    help: str
    required: bool
    group: str  # argparse's group title ("options", "positional arguments", or a custom one)
    exclusive: int | None  # index of its mutually exclusive group, if any
    exclusive_required: bool = False

    @property
    def takes_value(self) -> bool:
        return self.metavar is not None

    @property
    def completes(self) -> str:
        """What completes its value: ``choices``, ``file``, ``dir`` or ``none``."""
        if self.choices:
            return "choices"
        if self.metavar in DIR_METAVARS:
            return "dir"
        if self.metavar in FILE_METAVARS:
            return "file"
        return "none"


@dataclass(frozen=True)
class Command:
    """``saru`` itself or one of its (sub)commands."""

    path: tuple[str, ...]  # () for saru, ("cluster", "crm") for saru cluster crm
    summary: str  # the one-line help in the parent's command list
    description: str
    arguments: tuple[Argument, ...]
    subcommands: tuple[Command, ...] = field(default=())

    @property
    def name(self) -> str:
        return " ".join(("saru", *self.path))

    @property
    def options(self) -> tuple[Argument, ...]:
        return tuple(a for a in self.arguments if a.flags)

    @property
    def positionals(self) -> tuple[Argument, ...]:
        return tuple(a for a in self.arguments if not a.flags)

    def walk(self) -> list[Command]:
        """This command and every command below it, depth first, in the parser's order."""
        out = [self]
        for sub in self.subcommands:
            out.extend(sub.walk())
        return out


def read(parser: argparse.ArgumentParser, path: tuple[str, ...] = (), summary: str = "") -> Command:
    """The command tree of ``parser``."""
    arguments: list[Argument] = []
    subcommands: list[Command] = []
    groups = {id(action): title for group in parser._action_groups for action in group._group_actions
              for title in [group.title or "options"]}
    exclusive = {id(action): (i, group.required) for i, group in enumerate(parser._mutually_exclusive_groups)
                 for action in group._group_actions}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                subcommands.append(read(sub, (*path, name), helps.get(name, "")))
            continue
        if action.help == argparse.SUPPRESS:
            continue
        index, required = exclusive.get(id(action), (None, False))
        arguments.append(Argument(
            flags=tuple(action.option_strings), dest=action.dest, metavar=_metavar(action),
            nargs=action.nargs, choices=tuple(str(c) for c in action.choices or ()), help=action.help or "",
            required=action.required, group=groups.get(id(action), "options"), exclusive=index,
            exclusive_required=required))
    return Command(path=path, summary=summary, description=parser.description or "",
                   arguments=tuple(arguments), subcommands=tuple(subcommands))


def _metavar(action: argparse.Action) -> str | None:
    if action.option_strings and action.nargs == 0:
        return None
    if isinstance(action.metavar, str):
        return action.metavar
    if action.choices:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest.upper() if action.option_strings else action.dest
