"""Data planes: the places where a forwarding table is programmed (IPVS, nftables, userspace proxy).

* ``base``: the interface every plane implements (``Dataplane``, ``Capabilities``, the stats and
  connection types) and its error contract (``DataplaneError``);
* ``select``: choosing a plane by name or ``auto``, and what a configuration asks that a plane
  cannot do;
* one package per plane — ``ipvs``, ``nft``, ``proxy`` — each offering its ``Dataplane`` subclass
  in its ``__init__`` (imported only when ``select`` considers that plane);
* ``maglev`` and ``netmask``: pure pieces shared by the nft and proxy planes.

Import from those modules and packages; this package itself re-exports nothing.
"""
