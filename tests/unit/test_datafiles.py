"""saru.datafiles in a source checkout (and an editable install): every kind is found at its folder of the
tree; the wheel's copies are tested in tests/packaging/test_wheel.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from saru.datafiles import SOURCES, data_dir, main

ROOT = Path(__file__).resolve().parents[2]


def test_every_kind_is_its_folder_of_the_checkout() -> None:
    for kind, source in SOURCES.items():
        assert data_dir(kind) == ROOT / source
        assert any(data_dir(kind).iterdir()), kind


def test_unknown_kind() -> None:
    with pytest.raises(KeyError):
        data_dir("nothing")
    assert main(["nothing"]) == 2


def test_main_prints_one_directory_or_all(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["systemd"]) == 0
    assert capsys.readouterr().out.strip() == str(ROOT / "packaging" / "systemd")
    assert main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == list(SOURCES)
