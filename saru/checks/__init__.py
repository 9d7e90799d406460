"""Health checks: one module per protocol family, looked up through the registry in ``saru.checks.base``."""
