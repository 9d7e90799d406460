"""Translation between Saru's table model and the kernel's IPVS interface (pure, no I/O).

Moved here from ``saru/dataplane/ipvs_codec.py`` whole (``packing``); the next commit splits it by job.
"""

from saru.dataplane.ipvs.codec.packing import *  # noqa: F403
