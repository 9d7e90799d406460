"""Active-active directors: announcing the VIPs over BGP through a routing daemon (docs/scale-out.md).

Saru does not speak BGP itself. ``decide`` (pure) says which VIP is announced, announced with a worse
MED, or withdrawn; a driver per routing daemon (``bird``: BIRD 2) configures that daemon and tells it,
behind the small interface of ``base``; ``birdctl`` is BIRD's control-socket protocol. The daemon's
announcer (``saru.daemon.announcer``) runs them.
"""

from saru.bgp.base import RoutingDaemon, RoutingDaemonError, SessionDoc
from saru.bgp.bird import BirdDriver
from saru.bgp.decide import ROUTE_STATES, Route, announced_vips, decide, serving

__all__ = ["ROUTE_STATES", "BirdDriver", "Route", "RoutingDaemon", "RoutingDaemonError", "SessionDoc",
           "announced_vips", "decide", "serving"]
