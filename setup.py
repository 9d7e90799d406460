"""Build hook: the wheel carries Saru's non-Python files (OCF agents, systemd units, man pages, bash
completion, examples, logrotate and firewalld files) as package data under ``saru/data/<kind>/``,
copied from their folders in the source tree (``saru.datafiles.SOURCES``). Everything else is in
pyproject.toml."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from saru.datafiles import SOURCES  # noqa: E402


class BuildPyWithData(build_py):
    """build_py, then the data folders copied into the built package (file modes kept: agents are 0755)."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "saru" / "data"
        for kind, source in SOURCES.items():
            src = HERE / source
            if not src.is_dir():
                raise SystemExit(f"setup.py: {src} is missing (an sdist without it is incomplete)")
            dest = target / kind
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir(parents=True)
            for path in sorted(src.iterdir()):
                if path.is_file() and not path.name.startswith("."):
                    shutil.copy2(path, dest / path.name)


setup(cmdclass={"build_py": BuildPyWithData})
