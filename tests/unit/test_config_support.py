"""Helpers for the ldirectord.cf parser tests (no tests here): a fake resolver, parse/error helpers."""

from __future__ import annotations

import textwrap

import pytest

from saru.config.diagnostics import ConfigError
from saru.config.ldirectord import parse_text
from saru.model import Config, VirtualConfig

HOSTS = {
    ("web1", 4): "10.0.0.1",
    ("web2", 4): "10.0.0.2",
    ("www.example.com", 4): "192.0.2.10",
    ("lb", 4): "192.0.2.1",
    ("web6", 6): "2001:db8::10",
    ("lb6", 6): "2001:db8::1",
    ("localhost", 4): "127.0.0.1",
    ("bogus", 4): "not-an-address",
}
SERVICES = {
    ("http", "tcp"): 80,
    ("www", "tcp"): 80,
    ("https", "tcp"): 443,
    ("domain", "tcp"): 53,
    ("domain", "udp"): 53,
    ("smtp", "tcp"): 25,
    ("tcponly", "tcp"): 4000,
}


class FakeResolver:
    """Resolver that never touches the network; records every look-up."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object, object]] = []

    def host(self, name: str, family: int) -> str | None:
        self.calls.append(("host", name, family))
        return HOSTS.get((name, family))

    def service(self, name: str, protocol: str | None) -> int | None:
        self.calls.append(("service", name, protocol))
        if protocol is None:
            return SERVICES.get((name, "tcp"), SERVICES.get((name, "udp")))
        return SERVICES.get((name, protocol))

    def hostname(self) -> str:
        return "lb1"


def cfg(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def parse(text: str, path: str = "ld.cf") -> Config:
    return parse_text(cfg(text), path, resolver=FakeResolver())


def one(text: str) -> VirtualConfig:
    config = parse(text)
    assert len(config.virtuals) == 1
    return config.virtuals[0]


def failure(text: str, path: str = "ld.cf") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text, path)
    return info.value


def errors(text: str) -> list[str]:
    """``LINE: message`` of every error."""
    return [f"{d.line}: {d.message}" for d in failure(text).errors]


def warnings(text: str) -> list[str]:
    return [f"{d.line}: {d.message}" for d in parse(text).warnings]


def vblock(*lines: str, head: str = "virtual=192.0.2.1:80", pre: str = "") -> str:
    """A config with optional global lines ``pre`` and one virtual section of tab-indented lines."""
    body = "".join(f"\t{line}\n" for line in lines)
    return f"{pre}{head}\n{body}"
