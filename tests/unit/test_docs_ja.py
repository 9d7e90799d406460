"""The Japanese README and guide stay in step with Saru: every ``saru`` / ``saru-ldirectord`` command
they show is accepted by Saru's own argument parsers, every repository file they name exists, every
link and table-of-contents anchor resolves, and README.md keeps its opening (title, the two commands)
with the link to README.ja.md right after it.

Commands are read from fenced code blocks: in a ``sh`` block every line is a command (``#`` starts a
comment); in a ``console`` block the lines after a ``# `` or ``$ `` prompt are commands and the other
lines are their output; in an ``ini`` block (a systemd unit) the ``Exec…=`` lines. Other blocks (files,
logs) are not commands.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from saru.cli import ldirectord
from saru.cli.main import build_parser
from saru.docgen import markdown

REPO = Path(__file__).resolve().parents[2]
DOCS = ("README.ja.md", "docs/ja/guide.md")
SEPARATORS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "<<"}
#: a repository path in running text (not the tail of an absolute path such as /opt/saru/bin/saru)
REPO_PATH = re.compile(r"(?<![\w/.~-])((?:docs|saru|packaging|ocf|tests|tools|bench|man|completion)/[\w./:-]*\w)")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def shown_commands(text: str) -> list[list[str]]:
    """The argv of every ``saru``/``saru-ldirectord`` command in the document's code blocks."""
    out = []
    for block in markdown.blocks(text):
        if not isinstance(block, markdown.Code) or block.info not in ("sh", "console", "ini"):
            continue
        for line in block.lines:
            if block.info == "ini":  # a systemd unit: its Exec…= commands
                match = re.match(r"Exec\w*=[-@:+!]*(.+)", line)
                if not match:
                    continue
                line = match.group(1)
            elif block.info == "console":
                if not line.startswith(("# ", "$ ")):
                    continue
                line = line[2:]
            out += [argv for argv in _segments(line) if argv and Path(argv[0]).name in ("saru", "saru-ldirectord")]
    return out


def _segments(line: str) -> list[list[str]]:
    """The simple commands of a shell line, leading ``sudo``/``env``/``VAR=value`` removed."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    segments: list[list[str]] = [[]]
    try:
        for token in lexer:
            if token in SEPARATORS:
                segments.append([])
            else:
                segments[-1].append(token)
    except ValueError:  # unbalanced quotes: output such as "# The guide's cluster", unless it is a command
        if line.split()[0].rsplit("/", 1)[-1] in ("saru", "saru-ldirectord"):
            raise
        return []
    out = []
    for argv in segments:
        while argv and (argv[0] in ("sudo", "env", "exec") or re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", argv[0])):
            argv = argv[1:]
        out.append(argv)
    return out


def rejection(argv: list[str]) -> str | None:
    """Why Saru would refuse ``argv`` (None: it parses)."""
    if Path(argv[0]).name == "saru-ldirectord":
        try:
            ldirectord.parse_argv(argv[1:])
        except ldirectord.UsageError as exc:
            return f"saru-ldirectord usage error {exc}"
        return None
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv[1:])
    except SystemExit as exc:
        return None if exc.code == 0 else errors.getvalue().strip()
    return None


@pytest.mark.parametrize("doc", DOCS)
def test_every_command_shown_exists(doc: str) -> None:
    commands = shown_commands((REPO / doc).read_text())
    assert len(commands) >= (30 if doc.endswith("guide.md") else 12)
    problems = [f"{' '.join(argv)}: {why}" for argv in commands if (why := rejection(argv))]
    assert not problems, "\n".join(problems)


def test_the_guide_walks_through_the_operators_commands() -> None:
    used = {argv[1] for argv in shown_commands((REPO / "docs/ja/guide.md").read_text())
            if Path(argv[0]).name == "saru" and len(argv) > 1}
    assert used >= {"realserver", "check-config", "plan", "run", "status", "reload", "stop", "ipvsadm", "doctor",
                    "failover-test", "cluster"}


def test_the_command_reader_catches_a_wrong_command() -> None:
    """A renamed option or command in a shown line is found (the test above can fail)."""
    text = "```console\n# saru status --configg x.cf\noutput\n# saru-ldirectord x.cf begin\n```\n"
    commands = shown_commands(text)
    assert commands == [["saru", "status", "--configg", "x.cf"], ["saru-ldirectord", "x.cf", "begin"]]
    assert all(rejection(argv) for argv in commands)
    assert shown_commands("```sh\nFOO=1 saru plan -c a.cf | less  # comment\n```\n") == [["saru", "plan", "-c", "a.cf"]]


@pytest.mark.parametrize("doc", DOCS)
def test_every_file_named_exists(doc: str) -> None:
    text = (REPO / doc).read_text()
    named = set(REPO_PATH.findall(text))
    assert named, "the document names no repository file"
    missing = sorted(name for name in named if not (REPO / name).exists())
    assert not missing, f"{doc} names files that are not in the repository: {missing}"


@pytest.mark.parametrize("doc", DOCS)
def test_every_link_resolves(doc: str) -> None:
    path = REPO / doc
    text = path.read_text()
    anchors = {_slug(b.text) for b in markdown.blocks(text) if isinstance(b, markdown.Heading)}
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        if file:
            assert (path.parent / file).exists(), f"{doc}: broken link {target}"
        elif anchor:
            assert anchor in anchors, f"{doc}: no heading for #{anchor} (headings: {sorted(anchors)})"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_opens_with_the_two_commands_then_links_the_japanese_readme() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert lines[:6] == ["# Saru", "", "```sh", "make demo", "make test", "```"]
    following = next(line for line in lines[6:] if line.strip())
    assert "[README.ja.md](README.ja.md)" in following and "docs/ja/guide.md" in following
