"""The self-contained demo: small real servers on loopback (``backends``, run
by ``saru demo``) and an example ldirectord.cf."""
