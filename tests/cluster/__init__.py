"""Tests against real cluster software (Pacemaker/Corosync, keepalived) in network namespaces."""
