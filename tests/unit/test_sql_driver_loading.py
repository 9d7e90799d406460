"""Many SQL checks starting together share one driver import (no half-initialised module)."""

import subprocess
import sys

SCRIPT = """
import asyncio, sys
from saru.checks.sql import load_driver

async def main():
    first = asyncio.ensure_future(load_driver("aiomysql"))
    # wait until the import is under way in its worker thread: the module is in sys.modules
    # but not finished yet; a check starting now must wait for the same import
    while "aiomysql" not in sys.modules:
        await asyncio.sleep(0)
    second = await load_driver("aiomysql")
    assert hasattr(second, "Error"), "got a half-initialised module"
    assert second is await first
    print("ok")

asyncio.run(main())
"""


def test_a_check_starting_during_the_first_import_gets_the_complete_module():
    # a fresh interpreter, so that the driver is not imported yet
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
