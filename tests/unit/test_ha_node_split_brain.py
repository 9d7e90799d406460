"""The HA node's split-brain judgement (saru.ha.node) reads VRRP's typed ``Cause``, not the reason text.

No sockets, no namespaces: the node is given ``vrrp.Transition`` values as its VRRP instance would hand
them over (an instance that never started: its ``machine`` is None), and asked whether another master
speaking now looks like a split brain or a handover.
"""

from __future__ import annotations

from saru.events import Event, HAStateChange
from saru.ha.node import HANode, NodeState
from saru.ha.vrrp import Cause, State, Transition
from saru.ha.vrrp_socket import VRRPInstance
from saru.model import HASettings


def node() -> tuple[HANode, list[Event], list[bool]]:
    events: list[Event] = []
    active: list[bool] = []

    async def set_active(on: bool) -> None:
        active.append(on)

    return HANode(HASettings(interface="eth0"), set_active=set_active, emit=events.append), events, active


async def test_yielding_to_an_equal_priority_master_is_a_split_brain_whatever_the_sentence_says() -> None:
    ha, events, active = node()
    instance = VRRPInstance(ha.settings)
    yielded = Transition(State.MASTER, State.BACKUP, "a sentence without the words", Cause.EQUAL_PRIORITY)
    await ha._on_transition(yielded)
    assert ha.state is NodeState.BACKUP and ha.reason == "a sentence without the words"
    assert ha._looks_split(instance)
    assert active == [False]  # left master: the table cleared
    assert [(e.state, e.reason) for e in events if isinstance(e, HAStateChange)] == [
        ("backup", "a sentence without the words")]


async def test_yielding_to_a_higher_priority_master_is_a_handover() -> None:
    ha, _events, _active = node()
    instance = VRRPInstance(ha.settings)
    await ha._on_transition(Transition(State.MASTER, State.BACKUP, "master 10.0.0.9 has equal priority 100",
                                       Cause.HIGHER_PRIORITY))
    assert ha.state is NodeState.BACKUP
    assert not ha._looks_split(instance)


async def test_a_fault_forgets_the_cause_and_a_stopped_instance_keeps_the_fault() -> None:
    ha, events, _active = node()
    instance = VRRPInstance(ha.settings)
    await ha._on_transition(Transition(State.MASTER, State.BACKUP, "tie", Cause.EQUAL_PRIORITY))
    await ha._fault("link of eth0 is down")
    assert ha.state is NodeState.FAULT and not ha._looks_split(instance)
    await ha._on_transition(Transition(State.BACKUP, State.INIT, "shutdown", Cause.SHUTDOWN))
    assert ha.state is NodeState.FAULT  # the instance stopping because of the fault does not hide it
    assert [e.state for e in events if isinstance(e, HAStateChange)] == ["backup", "fault"]
    assert ha.snapshot()["state"] == "fault"
