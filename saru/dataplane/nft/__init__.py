"""The nftables data plane: Saru's table in two nftables tables of its own, one transaction per apply.

Pure (the ruleset; no I/O):

* ``names``: what Saru calls its tables, chains and sets, and the rule comments it reads back;
* ``slots``: the slot table of a service (rr/wrr sequences, Maglev tables, fo);
* ``environment``: what the renderer knows about the director (NICs, local addresses, timeouts);
* ``validation``: what nftables cannot do, refused before anything is rendered;
* ``exprs``: the nft text of one rule part (matches, hashes, actions);
* ``render``: a ``Table`` as the objects of both tables (``build``) or one whole script (``render``);
* ``transaction``: ``Objects`` and the commands turning old objects into new ones, touching only
  what differs;
* ``parse``: Saru's tables read back from nft's JSON listing;

and the edges:

* ``libnft``: a ctypes binding to libnftables (``nft -f -`` as a fallback);
* ``check``: the ruleset generation id and the object comparison behind drift detection;
* ``routes``: the NICs of gate reals and direct-routed VIPs (runs ``ip``);
* ``connections``: conntrack's NAT entries and the flow sets of direct routing;
* ``plane``: ``NftDataplane``, the ``Dataplane`` that puts it together.

Outside this package, ``NftDataplane`` is what runs (through ``saru.dataplane.select``); tests and
tools read Saru's tables with ``Nft`` and name its objects with ``service_id``.
"""

from saru.dataplane.nft.libnft import Nft, NftError
from saru.dataplane.nft.names import TABLE, service_id
from saru.dataplane.nft.plane import CAPABILITIES, NftDataplane

__all__ = ["CAPABILITIES", "TABLE", "Nft", "NftDataplane", "NftError", "service_id"]
