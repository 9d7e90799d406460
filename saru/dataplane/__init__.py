"""Data planes: the places where a forwarding table is programmed (IPVS, nftables, userspace proxy)."""
