"""The HTTP front door: JSON API, Prometheus metrics and the live dashboard (issue 12).

Everything here calls the daemon's service layer (``saru.daemon.service``), never the daemon's
internals. ``names`` is the one place where a virtual service and a real server get their
API/metrics names (``tcp/10.0.0.1:80``, ``10.0.0.2:80``) and are parsed back.
"""

from saru.api.names import BadName, parse_proxy, parse_server, proxy_name, server_name

__all__ = ["BadName", "parse_proxy", "parse_server", "proxy_name", "server_name"]
