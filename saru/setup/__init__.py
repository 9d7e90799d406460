"""Preparing and verifying the machines of the guide: real servers (``saru realserver``) and directors
(``saru doctor``).

``item`` is the checklist vocabulary both commands print; ``realserver_prep`` plans and applies the
real-server preparation (VIP on ``lo``, ARP sysctls, persistence), ``doctor`` checks a director; ``sysctl`` and
``netconf`` render/parse the persistent files, ``frames`` is the pure packet codec of the active probes
and ``probe``/``netinfo`` the raw-socket and netlink edges. Nothing here runs on import.
"""
