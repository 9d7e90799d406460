"""N hosts on one Ethernet segment, each in its own network namespace (a ``Lab`` with one bridge).

```python
with Segment({"a": ["10.98.0.1/24"], "b": ["10.98.0.2/24", "fd00:98::2/64"]}) as lan:
    lan["a"].run("ping", "-c1", "10.98.0.2")        # argv, no shell; raises on failure
    proc = lan["b"].popen("keepalived", "-n", ...)  # stopped at teardown
    lan["b"].addresses(4)                           # ['10.98.0.2']
    with lan["a"].enter():                          # this thread is in a's namespace:
        sock = socket.socket(...)                   # sockets opened here stay there
```

Layout: namespace ``saru-<id>-br`` holds bridge ``br0`` (STP and multicast snooping off, so
224.0.0.18 / ff02::12 reach every port); every host namespace ``saru-<id>-<name>`` has ``eth0``,
a veth whose peer ``p<i>`` (``i`` counting the hosts from 1, in order) is a port of ``br0``. IPv6 DAD
is off (addresses are usable at once), and ``up()`` returns once every host has its link-local address.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Self

from tests.lab.netns import Host, Lab
from tests.lab.wait import wait_for

BRIDGE = "br0"


class Segment(Lab):
    """Hosts named by ``hosts`` (name -> addresses for eth0) on one bridge; see the module docstring."""

    tag = "s"

    def __init__(self, hosts: Mapping[str, Sequence[str]], *, tag: str = "") -> None:
        super().__init__(["br", *hosts], tag=self.tag + tag)
        self.spec = {name: tuple(addrs) for name, addrs in hosts.items()}
        self.hosts: dict[str, Host] = {name: self[name] for name in hosts}

    def up(self) -> Self:
        """Namespaces, bridge, veths and addresses."""
        self.create("br")
        self.bridge("br", BRIDGE, "stp_state", "0", "mcast_snooping", "0")
        for i, (name, host) in enumerate(self.hosts.items(), 1):
            self.create(name)
            host.sysctl("net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
            self.plug(name, "br", BRIDGE, f"p{i}")
            host.add_address(*self.spec[name])
        for host in self.hosts.values():
            wait_for(partial(host.addresses, 6, scope="link"), 5, what=f"{host.name}: IPv6 link-local address")
        return self
