"""A password or RADIUS secret written wrongly in ldirectord.cf is refused at FILE:LINE without being
quoted back (the message reaches logs, ``saru status``, the API and ``saru reload``), and
``check-config --json`` hides the values (docs/security.md)."""

from __future__ import annotations

import pytest

from saru.config.diagnostics import ConfigError
from saru.config.json_view import HIDDEN, config_to_dict
from saru.config.ldirectord import parse_text

SECRET = "S3cret-value-91f"
HEAD = "virtual=127.0.0.1:3306\n\treal=127.0.0.1:3307 masq\n\tservice=mysql\n\tchecktype=negotiate\n"


@pytest.mark.parametrize("line", [
    f"passwd={SECRET}", f'passwd="{SECRET}', f'passwd="x"{SECRET}', f'secret="{SECRET}" {SECRET}',
    f"passwd {SECRET}", f"passwd: {SECRET}", f"secret={SECRET}",
])
def test_a_bad_secret_line_is_refused_without_showing_the_secret(line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_text(HEAD + f"\t{line}\n", "ld.cf")
    message = str(caught.value)
    assert "ld.cf:5" in message, message
    assert SECRET not in message, message


def test_check_config_json_hides_set_secrets() -> None:
    config = parse_text(HEAD + f'\tlogin="saru"\n\tpasswd="{SECRET}"\n', "ld.cf")
    view = config_to_dict(config)["virtuals"][0]
    assert view["passwd"] == HIDDEN and view["secret"] == "" and view["login"] == "saru"
    assert SECRET not in str(config_to_dict(config))


def test_a_world_readable_file_with_passwords_gets_a_warning(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from saru.config.ldirectord import parse_file

    path = tmp_path / "ld.cf"
    path.write_text(HEAD + f'\tlogin="saru"\n\tpasswd="{SECRET}"\n')
    path.chmod(0o644)
    [warning] = parse_file(path).warnings
    assert "world-readable and holds check passwords" in str(warning) and SECRET not in str(warning)
    path.chmod(0o640)
    assert parse_file(path).warnings == ()
