"""Fuzzing and hostile input: the parsers, packets, sockets and checks fed broken or malicious input.

Bounded in ``make test`` (Hypothesis profile ``ci``: few examples, derandomized, so a failure
reproduces); ``make fuzz`` runs the ``long`` profile (``SARU_FUZZ_PROFILE=long``). See docs/testing.md.
"""
