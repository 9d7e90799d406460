"""Health checks: one module per protocol family, looked up through ``saru.checks.registry``."""
