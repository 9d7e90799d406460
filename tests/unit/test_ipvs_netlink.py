"""``ipvs.netlink.GenlSocket`` against the running kernel's generic-netlink controller ("nlctrl",
present in every Linux kernel, read-only): family lookup, errors with their errno, and a batch
whose failures are reported at the right positions although only the last request asks for an ack."""

from __future__ import annotations

import errno
import sys

import pytest

from saru.dataplane.ipvs.netlink import CTRL_ATTR_FAMILY_NAME, CTRL_CMD_GETFAMILY, GenlSocket, NetlinkError
from saru.net import nla as _nla
from tests.helpers import require


@pytest.fixture
def ctrl() -> GenlSocket:
    require(sys.platform.startswith("linux"), "generic netlink is Linux only")
    sock = GenlSocket("nlctrl")
    yield sock
    sock.close()


def getfamily(name: str) -> tuple[int, bytes, bool]:
    return CTRL_CMD_GETFAMILY, _nla(CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0"), False


def test_family_lookup_and_unknown_family(ctrl: GenlSocket) -> None:
    assert ctrl.family_id == 0x10
    with pytest.raises(NetlinkError) as caught:
        GenlSocket("saru-nofamily")
    assert caught.value.code == errno.ENOENT


def test_request_error_and_dump(ctrl: GenlSocket) -> None:
    with pytest.raises(NetlinkError) as caught:
        ctrl.request(*getfamily("saru-nope")[:2])
    assert caught.value.code == errno.ENOENT
    families = ctrl.dump(CTRL_CMD_GETFAMILY)
    assert len(families) >= 1 and all(len(m) > 20 for m in families)


def test_batch_reports_each_failure_in_order(ctrl: GenlSocket) -> None:
    names = ["nlctrl", "saru-nope-1", "nlctrl", "saru-nope-2", "nlctrl"] * 300  # several chunks
    requests = [getfamily(name) for name in names]
    failures = ctrl.batch(requests, stop_after_failure=False)
    assert [index for index, _ in failures] == [i for i, name in enumerate(names) if name != "nlctrl"]
    assert all(exc.code == errno.ENOENT for _, exc in failures)
    assert ctrl.sent == len(names)
    # stopping after the chunk that holds the first failure
    failures = ctrl.batch(requests, stop_after_failure=True)
    assert failures[0][0] == 1 and ctrl.sent < len(names)
    assert ctrl.batch([getfamily("nlctrl")] * 3) == []
