"""The userspace proxy data plane (``plane``), its poller, TCP and UDP relays, and schedulers."""

from saru.dataplane.proxy.plane import CAPABILITIES, ProxyDataplane

__all__ = ["CAPABILITIES", "ProxyDataplane"]
