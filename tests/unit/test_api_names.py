"""API/metrics names of virtual services and real servers: formatting and parsing (pure)."""

from __future__ import annotations

import pytest

from saru.api.names import BadName, parse_proxy, parse_server, proxy_name, server_name
from saru.model import ServiceKey


@pytest.mark.parametrize(("key", "name"), [
    (ServiceKey("tcp", "10.0.0.1", 80), "tcp/10.0.0.1:80"),
    (ServiceKey("udp", "2001:db8::1", 53, family=6), "udp/[2001:db8::1]:53"),
    (ServiceKey("fwm", "", 0, fwmark=7), "fwmark/7"),
])
def test_proxy_names_round_trip(key: ServiceKey, name: str) -> None:
    assert proxy_name(key) == name
    assert parse_proxy(name).matches(key)


def test_server_names_round_trip() -> None:
    assert server_name("10.0.0.2", 80) == "10.0.0.2:80"
    assert server_name("2001:db8::2", 8080) == "[2001:db8::2]:8080"
    assert parse_server("[2001:db8::2]:8080") == ("2001:db8::2", 8080)
    assert parse_server("10.0.0.2:80") == ("10.0.0.2", 80)


@pytest.mark.parametrize("bad", ["", "tcp", "http/1.2.3.4:80", "tcp/1.2.3.4", "tcp/host:80", "tcp/1.2.3.4:99999",
                                 "tcp/2001:db8::1:80", "fwmark/x", "fwmark/0", "tcp/[1.2.3.4]:80"])
def test_bad_proxies_say_why(bad: str) -> None:
    with pytest.raises(BadName, match="proxy"):
        parse_proxy(bad)


@pytest.mark.parametrize("bad", ["", "1.2.3.4", "[::1]80", "x:1", "1.2.3.4:-1"])
def test_bad_servers_say_why(bad: str) -> None:
    with pytest.raises(BadName, match="server"):
        parse_server(bad)
