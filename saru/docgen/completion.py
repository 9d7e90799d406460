"""Bash completion for ``saru`` and ``saru-ldirectord``, generated from the argument parser and from
``saru.cli.ldirectord``'s tables.

The script walks the words typed so far to find the (sub)command, skipping the values of options that
take one, then completes: an option's value (its choices, a file name for ``FILE``/``PATH``/
``SARU.TOML`` metavars, a directory for ``DIR``), an option name after ``-``, a subcommand, or a
positional argument (choices or file names); with nothing left to complete it offers the options.
The per-command data are ``case`` tables, so the script needs nothing but bash (no bash-completion
helpers). One file serves both commands: install it as ``saru`` and link ``saru-ldirectord`` to it
for bash-completion's on-demand loading.
"""

from __future__ import annotations

import shlex

from saru.cli import ldirectord
from saru.cli.main import build_parser
from saru.docgen.cli_model import Argument, Command, read

HEADER = """\
# bash completion for saru and saru-ldirectord
# Generated from saru's argument parser by `python -m saru.docgen` (make completion): do not edit.
"""

FUNCTIONS = r"""
_saru_words() {  # complete from a word list
    mapfile -t COMPREPLY < <(compgen -W "$1" -- "$cur")
}

_saru_files() {
    compopt -o filenames 2>/dev/null
    mapfile -t COMPREPLY < <(compgen -f -- "$cur")
}

_saru_dirs() {
    compopt -o filenames 2>/dev/null
    mapfile -t COMPREPLY < <(compgen -d -- "$cur")
}

_saru() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local path="" word skip=0 npos=0 i
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if [[ $word == "=" ]]; then skip=1; continue; fi
        if ((skip)); then skip=0; continue; fi
        case $word in
            --*=*) ;;
            -?*) _saru_takes_value "$path" "$word" && skip=1 ;;
            *) if _saru_is_command "$path" "$word"; then path=${path:+$path }$word; npos=0
               else npos=$((npos + 1)); fi ;;
        esac
    done
    if [[ $prev == "=" ]] && ((COMP_CWORD >= 2)); then
        _saru_value "$path" "${COMP_WORDS[COMP_CWORD-2]}"; return 0
    fi
    if ((skip)); then _saru_value "$path" "$prev"; return 0; fi
    if [[ $cur == -* ]]; then _saru_words "$(_saru_options "$path")"; return 0; fi
    local subcommands
    subcommands=$(_saru_subcommands "$path")
    if [[ -n $subcommands ]]; then _saru_words "$subcommands"; return 0; fi
    _saru_positional "$path" "$npos" || _saru_words "$(_saru_options "$path")"
    return 0
}

_saru_ldirectord() {
    local cur=${COMP_WORDS[COMP_CWORD]} word nargs=0 verb="" i
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        case $word in
            -?*) ;;
            *) nargs=$((nargs + 1)); [[ " $_saru_ldirectord_verbs " == *" $word "* ]] && verb=$word ;;
        esac
    done
    if [[ $cur == -* ]]; then _saru_words "$_saru_ldirectord_options"; return 0; fi
    [[ -n $verb ]] && return 0
    if ((nargs == 0)); then
        _saru_files
        local files=("${COMPREPLY[@]}")
        _saru_words "$_saru_ldirectord_verbs"
        COMPREPLY+=("${files[@]}")
    else
        _saru_words "$_saru_ldirectord_verbs"
    fi
    return 0
}

complete -F _saru saru
complete -F _saru_ldirectord saru-ldirectord
"""


def render() -> str:
    commands = read(build_parser()).walk()
    parts = [HEADER, _is_command(commands), _subcommands(commands), _options(commands), _takes_value(commands),
             _values(commands), _positionals(commands), _ldirectord(), FUNCTIONS]
    return "\n".join(parts)


def _key(command: Command) -> str:
    return shlex.quote(" ".join(command.path)) if command.path else '""'


def _case(function: str, subject: str, arms: list[tuple[str, str]], default: str) -> str:
    lines = [f"{function}() {{", f"    case {subject} in"]
    lines += [f"        {pattern}) {body} ;;" for pattern, body in arms]
    lines += [f"        *) {default} ;;", "    esac", "}", ""]
    return "\n".join(lines)


def _is_command(commands: list[Command]) -> str:
    patterns = [" ".join(c.path) for c in commands if c.path]
    arms = [("|".join(shlex.quote(p) for p in patterns), "return 0")]
    return _case("_saru_is_command", '"${1:+$1 }$2"', arms, "return 1")


def _subcommands(commands: list[Command]) -> str:
    arms = [(_key(c), "echo " + shlex.quote(" ".join(s.path[-1] for s in c.subcommands)))
            for c in commands if c.subcommands]
    return _case("_saru_subcommands", '"$1"', arms, ":")


def _options(commands: list[Command]) -> str:
    arms = [(_key(c), "echo " + shlex.quote(" ".join(f for a in c.options for f in a.flags))) for c in commands]
    return _case("_saru_options", '"$1"', arms, ":")


def _option_patterns(command: Command, argument: Argument) -> str:
    prefix = " ".join(command.path)
    return "|".join(shlex.quote(f"{prefix} {flag}" if prefix else flag) for flag in argument.flags)


def _takes_value(commands: list[Command]) -> str:
    patterns = [_option_patterns(c, a) for c in commands for a in c.options if a.takes_value]
    arms = [("|".join(patterns), "return 0")] if patterns else []
    return _case("_saru_takes_value", '"${1:+$1 }$2"', arms, "return 1")


def _completer(argument: Argument) -> str | None:
    kind = argument.completes
    if kind == "choices":
        return "_saru_words " + shlex.quote(" ".join(argument.choices))
    return {"file": "_saru_files", "dir": "_saru_dirs"}.get(kind)


def _values(commands: list[Command]) -> str:
    arms = []
    for command in commands:
        for argument in command.options:
            body = _completer(argument) if argument.takes_value else None
            if body:
                arms.append((_option_patterns(command, argument), body))
    return _case("_saru_value", '"${1:+$1 }$2"', arms, ":")


def _positionals(commands: list[Command]) -> str:
    """``_saru_positional PATH N``: complete the N-th positional argument (from 0); false if none."""
    arms = []
    for command in commands:
        prefix = " ".join(command.path)
        for index, argument in enumerate(command.positionals):
            body = _completer(argument) or ":"
            many = argument.nargs in ("*", "+")
            arms.append((shlex.quote(f"{prefix}:") + ("*" if many else str(index)), body))
    return _case("_saru_positional", '"$1:$2"', arms, "return 1")


def _ldirectord() -> str:
    options = [spelling for term, _ in ldirectord.OPTIONS if term.startswith("-") for spelling in term.split("|")]
    return "\n".join([
        "_saru_ldirectord_verbs=" + shlex.quote(" ".join(ldirectord.COMMANDS)),
        "_saru_ldirectord_options=" + shlex.quote(" ".join(options)),
        "",
    ])
