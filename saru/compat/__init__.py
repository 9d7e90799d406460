"""Compatibility with the tools Saru replaces: their words and formats, kept in one place.

* ``ipvsadm``: ipvsadm's listings, ``-S`` rules and command lines for a Saru table (what
  ``saru ipvsadm`` and ``saru plan`` print).
"""
