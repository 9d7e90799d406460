"""The control-socket protocol between a running daemon and its commands.

This package owns the wire: where the socket lives (``paths``), the framing and the server that
answers one JSON request per connection (``server``), the client (``client``), and how tables, ops
and service keys travel as JSON (``codec``: a ``ServiceKey`` crosses the socket in one form only,
``key_to_dict``'s). What each command does is the daemon's business (``saru.daemon``).
"""

from saru.control.client import request, request_sync
from saru.control.codec import (
    ServiceKeyDict,
    key_from_dict,
    key_to_dict,
    op_from_dict,
    op_to_dict,
    table_from_list,
    table_to_list,
)
from saru.control.paths import default_socket_path, runtime_dir
from saru.control.server import MAX_REQUEST, ControlServer, Handler

__all__ = [
    "MAX_REQUEST",
    "ControlServer",
    "Handler",
    "ServiceKeyDict",
    "default_socket_path",
    "key_from_dict",
    "key_to_dict",
    "op_from_dict",
    "op_to_dict",
    "request",
    "request_sync",
    "runtime_dir",
    "table_from_list",
    "table_to_list",
]
