"""Config front ends: ldirectord.cf (``ldirectord``), later saru.toml; both produce ``saru.model.Config``."""
