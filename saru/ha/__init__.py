"""High availability without Pacemaker: Saru's own VRRPv3 speaker and what a director does with it.

``vrrp`` is the pure RFC 5798 codec and state machine, ``vrrp_socket`` drives it from raw sockets
under asyncio; the floating IP, VIPcheck, ping score and the node that ties them to the daemon live
in sibling modules. Nothing here runs on import.
"""
