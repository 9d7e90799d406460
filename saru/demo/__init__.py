"""The self-contained demo: small real servers on loopback and an example ldirectord.cf."""
