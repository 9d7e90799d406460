"""``saru ipvsadm`` editing commands turned into table ops, checked against ipvsadm's rules.

ipvsadm (process_options in ipvsadm.c) replaces a destination's port by the service's port only for
``-a`` and ``-e`` with direct routing or tunnelling (its default is ``-g``); ``-d`` looks the
destination up by the address and port given, whatever its forwarding method.
"""

from __future__ import annotations

import argparse

import pytest

from saru.cli.ipvsadm import OperationError, build_arguments, edit_ops
from saru.model import AddDest, DelDest, Dest, EditDest, Service, ServiceKey, ServiceSettings, Table

KEY = ServiceKey("tcp", "192.0.2.10", 80, None, 4)


def parse(*words: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ipvsadm", add_help=False, exit_on_error=False)
    build_arguments(parser)
    return parser.parse_args(list(words))


def table(*dests: Dest) -> Table:
    return Table.of([Service(KEY, ServiceSettings(scheduler="wlc"), {d.key: d for d in dests})])


def test_delete_a_masq_real_on_another_port():
    masq = Dest("10.0.0.1", 8080, "masq", 1)
    ops = edit_ops(parse("-d", "-t", "192.0.2.10:80", "-r", "10.0.0.1:8080"), table(masq))
    assert ops == [DelDest(KEY, "10.0.0.1", 8080)]


def test_delete_without_a_port_means_the_service_port():
    gate = Dest("10.0.0.1", 80, "gate", 1)
    ops = edit_ops(parse("-d", "-t", "192.0.2.10:80", "-r", "10.0.0.1"), table(gate))
    assert ops == [DelDest(KEY, "10.0.0.1", 80)]


def test_delete_looks_up_the_port_given_even_for_a_gate_real():
    """ipvsadm -d -r RIP:8080 on a DR real (programmed at :80) is "No such destination"."""
    gate = Dest("10.0.0.1", 80, "gate", 1)
    with pytest.raises(OperationError, match="No such destination"):
        edit_ops(parse("-d", "-t", "192.0.2.10:80", "-r", "10.0.0.1:8080"), table(gate))


def test_add_and_edit_still_take_the_service_port_for_gate_and_ipip():
    ops = edit_ops(parse("-a", "-t", "192.0.2.10:80", "-r", "10.0.0.2:8080"), table())
    assert ops == [AddDest(KEY, Dest("10.0.0.2", 80, "gate", 1))]
    ops = edit_ops(parse("-a", "-t", "192.0.2.10:80", "-r", "10.0.0.2:8080", "-i"), table())
    assert ops == [AddDest(KEY, Dest("10.0.0.2", 80, "ipip", 1))]
    ops = edit_ops(parse("-a", "-t", "192.0.2.10:80", "-r", "10.0.0.2:8080", "-m"), table())
    assert ops == [AddDest(KEY, Dest("10.0.0.2", 8080, "masq", 1))]
    gate = Dest("10.0.0.1", 80, "gate", 1)
    ops = edit_ops(parse("-e", "-t", "192.0.2.10:80", "-r", "10.0.0.1:8080", "-w", "5"), table(gate))
    assert ops == [EditDest(KEY, Dest("10.0.0.1", 80, "gate", 5))]
    masq = Dest("10.0.0.3", 8080, "masq", 1)
    ops = edit_ops(parse("-e", "-t", "192.0.2.10:80", "-r", "10.0.0.3:8080", "-m", "-w", "2"), table(masq))
    assert ops == [EditDest(KEY, Dest("10.0.0.3", 8080, "masq", 2))]
