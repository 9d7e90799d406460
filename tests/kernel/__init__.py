"""Kernel tests: nftables data plane in network namespaces."""
