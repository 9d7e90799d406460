"""Command-line front ends: ``saru`` and the ldirectord-compatible ``saru-ldirectord``."""
