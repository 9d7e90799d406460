"""The tests' network lab: machines built out of network namespaces."""
