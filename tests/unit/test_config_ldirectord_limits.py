"""ldirectord.cf input at the edges: NUL bytes anywhere but in a comment are refused with FILE:LINE (no
program, path or check request can carry one; accepted, they failed later at run time), and a huge
line is parsed, or reported in a message of bounded size."""

from __future__ import annotations

import pytest

from saru.config.diagnostics import ConfigError
from saru.config.ldirectord import parse_text

HEAD = "checktimeout=1\nvirtual=127.0.0.1:80\n\treal=127.0.0.2:80 masq\n"


@pytest.mark.parametrize(("text", "line"), [
    (HEAD + '\tchecktype=external\n\tcheckcommand="/bin/true\0x"\n', 5),
    (HEAD + '\tfallbackcommand="/bin/true\0x"\n', 4),
    ('callback="/bin/true\0x"\n' + HEAD, 1),
    (HEAD + '\tchecktype=negotiate\n\tservice=http\n\trequest="/a\0b"\n\treceive="x"\n', 6),
    ('maintenancedir="/tmp/a\0b"\n' + HEAD, 1),
    ("\0\0\0\n" + HEAD, 1),
])
def test_nul_bytes_are_refused(text: str, line: int) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_text(text, "ld.cf")
    first = str(caught.value.diagnostics[0])
    assert first.startswith(f"ld.cf:{line}: ") and "NUL byte" in first, str(caught.value)


def test_nul_in_a_comment_is_harmless() -> None:
    assert len(parse_text("# a\0b\n" + HEAD).virtuals) == 1


def test_huge_lines() -> None:
    big = "a" * 5_000_000
    config = parse_text(HEAD + f'\tchecktype=negotiate\n\tservice=http\n\trequest="{big}"\n\treceive="x"\n')
    assert config.virtuals[0].request == "/" + big
    with pytest.raises(ConfigError) as caught:
        parse_text(HEAD + big + "\n")
    assert len(str(caught.value)) < 400
