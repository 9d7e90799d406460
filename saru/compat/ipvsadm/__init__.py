"""ipvsadm's text, printf for printf (ipvsadm 1.31), for whichever data plane runs.

* ``format``: ``-L -n`` listings (plain, ``--stats``, ``--rate``, ``--thresholds``,
  ``--persistent-conn``), ``-S`` rules, ``-L -n -c`` connection entries, ``-L --daemon``;
* ``describe``: one table operation as an ipvsadm command line (``describe_op``).

Pure functions; ``saru ipvsadm`` (``saru.cli.ipvsadm``) and ``saru plan`` print them.
"""

from saru.compat.ipvsadm.describe import describe_op
from saru.compat.ipvsadm.format import (
    format_connections,
    format_daemons,
    format_listing,
    format_rules,
    format_service,
    largenum,
)

__all__ = [
    "describe_op",
    "format_connections",
    "format_daemons",
    "format_listing",
    "format_rules",
    "format_service",
    "largenum",
]
