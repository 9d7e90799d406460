"""The exception every config front end raises: ``ConfigError`` with one ``Diagnostic`` per problem.

``str(error)`` is the diagnostics one per line, each ``FILE:LINE: message`` (the format compilers and
editors understand), so a command-line front end can print it as it is.
"""

from __future__ import annotations

from collections.abc import Iterable

from saru.model import Diagnostic


class ConfigError(Exception):
    """A configuration could not be accepted; ``diagnostics`` says where and why (errors first)."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return "\n".join(str(d) for d in self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        """Only the diagnostics of severity ``error``."""
        return [d for d in self.diagnostics if d.severity == "error"]
