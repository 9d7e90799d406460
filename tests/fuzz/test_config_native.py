"""saru.toml fuzzing: generated from its schema (parses, and the Settings say what was written) and
mutated from every real saru.toml in the tree (parses, or a ``ConfigError`` whose every diagnostic is
``FILE:LINE: message``). Never another exception, never a hang."""

from __future__ import annotations

import ipaddress
import json

from hypothesis import example, given
from hypothesis import strategies as st

from saru.config.diagnostics import ConfigError
from saru.config.native import parse_settings
from saru.model import Settings
from saru.model.settings import DATAPLANES
from tests.fuzz.budget import fuzz
from tests.fuzz.corpus import toml_configs
from tests.fuzz.mutate import mutated_text

SEEDS = [text for _, text in toml_configs()]
ALPHABET = ' \t\n#"\'[]{}=.,_-+:/0123456789abcdefghilmnoprstuvxyz'
FILE = "/nonexistent/fuzz/saru.toml"


def parse_or_clean_error(text: str) -> Settings | None:
    lines = max(1, len(text.split("\n")))
    try:
        return parse_settings(text, FILE)
    except ConfigError as exc:
        assert exc.diagnostics
        for d in exc.diagnostics:
            assert d.file == FILE and 1 <= d.line <= lines and d.message.strip(), (d, lines)
            assert str(d).startswith(f"{FILE}:{d.line}: "), str(d)
        return None


def test_the_corpus_is_there() -> None:
    names = [name for name, _ in toml_configs()]
    assert {"packaging/etc/saru.toml", "packaging/examples/saru.toml"} <= set(names)
    assert len(names) >= 5, names
    assert parse_or_clean_error(dict(toml_configs())["packaging/examples/saru.toml"]) is not None


@fuzz(150)
@given(mutated_text(SEEDS, ALPHABET))
@example("[ha]\ninterface = \"eth0\"\nvips = [\"10.0.0.1/24\"]\nadvert_interval = nan\n")
@example("[ha]\ninterface = \"eth0\"\nvips = [\"10.0.0.1/24\"]\npriority = 1e309\n")
@example("[director]\nconfig = \"")
@example("[director]\n" + "x = [" * 2000)
def test_mutated_real_settings(text: str) -> None:
    parse_or_clean_error(text)


@fuzz(80)
@given(st.text(max_size=300))
def test_arbitrary_text(text: str) -> None:
    parse_or_clean_error(text)


# -- from the schema -------------------------------------------------------------------------------


def toml_value(value: object) -> str:
    """A TOML literal (strings as JSON strings, which TOML's basic strings accept for these values)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


@st.composite
def generated(draw: st.DrawFn) -> tuple[str, dict[str, dict[str, object]]]:
    sections: dict[str, dict[str, object]] = {
        "director": {"dataplane": draw(st.sampled_from(DATAPLANES)),
                     "drop_privileges": draw(st.booleans())},
    }
    if draw(st.booleans()):
        host = draw(st.integers(1, 254))
        sections["ha"] = {
            "interface": draw(st.sampled_from(("eth0", "bond0", "ens3", "vlan.5"))),
            "vips": [f"192.0.2.{host}/{draw(st.integers(8, 32))}"],
            "virtual_router_id": draw(st.integers(1, 255)),
            "priority": draw(st.integers(1, 253)),
            "advert_interval": draw(st.sampled_from((0.1, 0.5, 1.0, 2.0))),
            "preempt": draw(st.booleans()),
            "garp_repeat": draw(st.integers(0, 100)),
            "unicast_peers": draw(st.lists(st.integers(1, 254).map(lambda h: f"198.51.100.{h}"), max_size=3)),
        }
    if draw(st.booleans()):
        sections["api"] = {"listen": f"127.0.0.1:{draw(st.integers(1, 65535))}"}
    text = "".join(f"[{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in body.items()) + "\n"
                   for name, body in sections.items())
    return text, sections


@fuzz(100)
@given(generated())
def test_generated_settings_say_what_was_written(case: tuple[str, dict[str, dict[str, object]]]) -> None:
    text, sections = case
    settings = parse_or_clean_error(text)
    assert settings is not None, text
    assert settings.director.dataplane == sections["director"]["dataplane"]
    assert settings.director.drop_privileges == sections["director"]["drop_privileges"]
    if "ha" in sections:
        ha = sections["ha"]
        assert settings.ha is not None
        assert settings.ha.interface == ha["interface"]
        assert settings.ha.vips == tuple(ipaddress.ip_interface(v) for v in ha["vips"])  # type: ignore[attr-defined]
        assert settings.ha.virtual_router_id == ha["virtual_router_id"]
        assert settings.ha.priority == ha["priority"] and settings.ha.preempt == ha["preempt"]
        assert settings.ha.advert_interval == ha["advert_interval"]
        assert settings.ha.garp_repeat == ha["garp_repeat"]
        assert list(settings.ha.unicast_peers) == ha["unicast_peers"]
    else:
        assert settings.ha is None
    if "api" in sections:
        assert settings.api is not None and settings.api.listen == sections["api"]["listen"]
