"""tests/vm/guest runs only inside the QEMU guest (booted by test_ipvs_in_vm.py), never on the host."""

from __future__ import annotations

import os

collect_ignore = [] if os.environ.get("SARU_IN_VM") == "1" else ["guest"]
