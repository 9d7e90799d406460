"""saru.toml ``[api]``: listen forms, the loopback rule, TLS pairs, the token file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from saru.config.diagnostics import ConfigError
from saru.config.native import load_settings, parse_settings
from saru.model import Endpoint, parse_listen


@pytest.mark.parametrize("text,endpoint", [
    ("127.0.0.1:9180", Endpoint("127.0.0.1", 9180)),
    ("[::1]:80", Endpoint("::1", 80)),
    ("localhost:8000", Endpoint("localhost", 8000)),
    ("unix:/run/saru/api.sock", Endpoint(path="/run/saru/api.sock")),
    ("", None),
])
def test_listen_forms(text: str, endpoint: Endpoint | None) -> None:
    assert parse_listen(text) == endpoint


@pytest.mark.parametrize("text", ["9180", "example.com:80", "::1:80", "[127.0.0.1]:80", "127.0.0.1:0",
                                  "127.0.0.1:99999", "unix:relative.sock"])
def test_bad_listen_is_refused_with_its_line(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(f'[api]\nlisten = "{text}"\n', "saru.toml")
    assert "saru.toml:2: [api] listen:" in str(caught.value)


def test_no_api_section_no_api_and_the_default_listen() -> None:
    assert parse_settings("").api is None
    api = parse_settings("[api]\n").api
    assert api is not None and str(api.endpoint) == "127.0.0.1:9180" and api.endpoint.loopback


def test_a_non_loopback_listen_needs_token_and_tls_or_insecure(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reachable from other hosts"):
        parse_settings('[api]\nlisten = "0.0.0.0:9180"\n')
    with pytest.raises(ConfigError, match="reachable from other hosts"):
        parse_settings('[api]\nlisten = "[2001:db8::1]:9180"\ntoken_file = "/t"\n')
    both = parse_settings('[api]\nlisten = "0.0.0.0:9180"\ntoken_file = "/t"\ntls_cert = "/c"\ntls_key = "/k"\n')
    assert both.api is not None and both.api.tls
    assert parse_settings('[api]\nlisten = "0.0.0.0:9180"\ninsecure = true\n').api is not None
    with pytest.raises(ConfigError, match="tls_cert and tls_key go together"):
        parse_settings('[api]\ntls_cert = "/c"\n')


def test_token_file_relative_readable_and_warned_when_world_readable(tmp_path: Path) -> None:
    token = tmp_path / "api.token"
    token.write_text("abc\n")
    os.chmod(token, 0o644)
    toml = tmp_path / "saru.toml"
    toml.write_text('[api]\ntoken_file = "api.token"\n')
    os.chmod(toml, 0o600)
    settings = load_settings(toml)
    assert settings.api is not None and settings.api.token_file == str(token)
    assert [str(w) for w in settings.warnings] == [
        f"{toml}:2: warning: [api] token_file: {token} is world-readable and holds the API's write token: chmod o-r"]
    os.chmod(token, 0o600)
    assert load_settings(toml).warnings == ()
    os.chmod(toml, 0o644)  # naming the token's file is no secret: a world-readable saru.toml is fine
    assert load_settings(toml).warnings == ()
    token.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_settings(toml)
    token.unlink()
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(toml)
