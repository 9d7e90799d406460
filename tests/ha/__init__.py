"""Tests of the built-in high availability (VRRP, floating IP) against real peers in namespaces."""
