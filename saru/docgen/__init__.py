"""Generated documentation: the man pages and the bash completion, made from the sources they describe.

``saru(8)`` and the completion come from ``saru``'s argument parser, ``saru-ldirectord(8)`` from
``saru.cli.ldirectord``'s option, command and environment tables, ``saru.toml(5)`` from
docs/settings.md (the settings reference). ``python -m saru.docgen`` (``make man completion``) writes
them under ``man/`` and ``completion/``; ``--check`` fails when a committed file differs from what
the sources give, and so does tests/unit/test_docgen.py.
"""
