"""Helpers of the data-plane benchmarks (``bench/dataplane_update.py``, ``bench/forwarding.py``)."""
