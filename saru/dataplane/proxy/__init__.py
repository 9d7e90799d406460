"""The userspace proxy data plane: TCP and UDP relayed by Saru itself (no root, no kernel support).

Owns the proxy's sockets and its scheduling: ``plane`` (``ProxyDataplane``, the ``Dataplane``),
``poll`` (the epoll readiness loop), ``tcp`` and ``udp`` (listeners and relays), ``schedulers``
(the IPVS scheduling algorithms, pure) and ``balancer`` (one service's destinations, scheduler and
persistence templates, pure). Outside this package only ``ProxyDataplane`` is needed (through
``saru.dataplane.select``); the scheduling modules are public for their tests and benchmarks.
"""

from saru.dataplane.proxy.balancer import Balancer
from saru.dataplane.proxy.plane import CAPABILITIES, ProxyDataplane
from saru.dataplane.proxy.schedulers import SCHEDULERS

__all__ = ["CAPABILITIES", "SCHEDULERS", "Balancer", "ProxyDataplane"]
