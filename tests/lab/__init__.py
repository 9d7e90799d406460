"""The tests' network lab: everything that builds machines out of network namespaces, in one place.

What it owns: namespaces named ``saru-<id>-<role>`` that a test creates and deletes even on failure
(``Lab``, one ``Host`` per namespace); bridges, veth cables and addresses; running commands and
long-lived processes inside a namespace, and stopping them; moving a thread or an event loop into one
(``Host.enter``, ``NsLoop``); a ``saru run`` in a namespace and the NIC filter a director there needs
(``NsDaemon``, ``NIC_FILTER``); whether this machine can build a lab at all (``can_build``); polling with a
deadline (``wait_for``); the guide's nginx real servers (``start_nginx_site``). Two ready-made labs are
built on it: ``Segment`` (N hosts on one bridge, ``tests.lab.segment``) and ``Topology`` (the
UltraMonkey guide's network, ``tests.lab.guide``); a third, ``tests.lab.bgp`` (not imported here), is
the BGP scale-out bed, on the nftables plane (tests/bgp, bench/scaleout.py) or on IPVS (the VM guest).
The HA bed (``tests.ha.bed``) and the Pacemaker cluster (``tests.cluster.bed``) extend them.
"""

from tests.lab.daemon import NIC_FILTER, NsDaemon
from tests.lab.guide import Topology
from tests.lab.netns import ROOT, Host, Lab, checked, setns
from tests.lab.nginx import nginx_conf, nginx_site, start_nginx_site
from tests.lab.nsloop import NsLoop
from tests.lab.probe import can_build, netns_usable
from tests.lab.procs import kill_namespace, signal_pid, stop_process, stop_processes
from tests.lab.segment import Segment
from tests.lab.wait import async_wait_for, wait_for

__all__ = [
    "NIC_FILTER", "ROOT", "Host", "Lab", "NsDaemon", "NsLoop", "Segment", "Topology", "async_wait_for", "can_build",
    "checked", "kill_namespace",
    "netns_usable", "nginx_conf", "nginx_site", "setns", "signal_pid", "start_nginx_site", "stop_process",
    "stop_processes", "wait_for",
]
