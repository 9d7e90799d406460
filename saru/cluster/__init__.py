"""Pacemaker integration: the guide's cluster configuration generated from saru.toml (``crm``)."""
