"""Saru: an UltraMonkey-style high-availability load balancer (ldirectord.cf in, LVS tables out)."""

__version__ = "0.1.0"
