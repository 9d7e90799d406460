"""A small generic-netlink client for the kernel's IPVS family, on a plain stdlib socket.

Why not pyroute2's socket: its per-message machinery (an asyncio future and an async iterator per
request, its own encoder) cost more than the kernel's work for bulk changes. Here, many requests go
to the kernel in ONE ``sendmsg`` (netlink processes every message of a buffer in order, in the
sender's context, and answers each failure with an error message even without ``NLM_F_ACK``): only
the last request of a chunk asks for an ack, so a chunk costs two system calls, however many
requests it holds, and the ack of the last one proves every earlier error has been queued already.

* ``GenlSocket(family, netns=None)`` opens the socket (in another network namespace when ``netns``
  names one, e.g. ``/run/netns/NAME``: IPVS is per namespace) and resolves the family's id;
* ``batch(requests)`` sends ``(cmd, payload)`` requests in chunks and returns which failed
  (index, errno); with ``stop_after_failure`` no chunk is sent after one that had a failure;
* ``request(cmd, payload)`` one request with its ack; ``dump(cmd, payload)`` the raw messages of a dump.

All calls block (the kernel answers synchronously, while ``sendmsg`` runs); callers with an event
loop run big batches in a thread. Errors are ``NetlinkError`` with the kernel's errno as ``code``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from saru.net import nla, parse_attrs

T = TypeVar("T")

NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLMSG_ERROR = 2
NLMSG_DONE = 3
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # error messages do not echo the whole request
SO_RCVBUFFORCE = 33
CLONE_NEWNET = 0x40000000

#: Receive buffer asked for (root may exceed net.core.rmem_max): error replies of a chunk queue here.
RCVBUF = 4 << 20
#: At most this many bytes of requests per sendmsg (below the default 212 KiB send buffer).
CHUNK_BYTES = 48 << 10
#: Kernel memory per queued reply, a generous estimate (skb overhead dominates small messages).
REPLY_TRUESIZE = 1024

_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr
_HEADER_GENL = struct.Struct("=IHHIIBBH")  # struct nlmsghdr + struct genlmsghdr, packed at once


class NetlinkError(OSError):
    """The kernel refused a request (``code`` is its errno)."""

    def __init__(self, code: int, what: str = "") -> None:
        super().__init__(code, f"{what}: {os.strerror(code)}" if what else os.strerror(code))
        self.code = code


def run_in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    """``fn()`` run in the network namespace ``netns`` (a file such as /run/netns/NAME), by a
    thread that switches namespace and then ends; in this process's own namespace when None.
    Sockets and /proc/net files opened by ``fn`` belong to that namespace."""
    if netns is None:
        return fn()
    results: list[T] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    code = ctypes.get_errno()
                    raise OSError(code, f"setns({netns}): {os.strerror(code)}")
            finally:
                os.close(fd)
            results.append(fn())
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    worker = threading.Thread(target=work, name="saru-netns")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    return results[0]


def _genl_socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)


class GenlSocket:
    """One generic-netlink socket bound to one family (blocking calls)."""

    def __init__(self, family: str, netns: str | None = None, timeout: float = 30.0) -> None:
        self.sock = run_in_netns(netns, _genl_socket)
        try:
            self.sock.bind((0, 0))
            self.sock.settimeout(timeout)
            for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
                try:
                    self.sock.setsockopt(socket.SOL_SOCKET, option, RCVBUF)
                    break
                except OSError:
                    continue
            try:
                self.sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            except OSError:
                pass
            rcvbuf = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            #: requests per chunk, so that a chunk's error replies always fit the receive buffer
            self.chunk_requests = max(16, min(4096, rcvbuf // REPLY_TRUESIZE))
            self.buffer = bytearray(1 << 18)
            self.seq = 0
            self.sent = 0  # requests of the last batch() that went out
            self.family_id = GENL_ID_CTRL
            reply = self._roundtrip(GENL_ID_CTRL, CTRL_CMD_GETFAMILY,
                                    nla(CTRL_ATTR_FAMILY_NAME, family.encode() + b"\0"), NLM_F_REQUEST)
            found = parse_attrs(reply, 20).get(CTRL_ATTR_FAMILY_ID)
            if found is None:
                raise NetlinkError(errno.ENOENT, f"generic netlink family {family}")
            self.family_id = struct.unpack_from("=H", found)[0]
        except BaseException:
            self.sock.close()
            raise

    def close(self) -> None:
        self.sock.close()

    # ------------------------------------------------------------------ messages

    def _message(self, family_id: int, cmd: int, payload: bytes, flags: int) -> tuple[int, bytes]:
        self.seq = (self.seq + 1) & 0xFFFFFFFF or 1
        return self.seq, _HEADER_GENL.pack(20 + len(payload), family_id, flags, self.seq, 0, cmd, 1, 0) + payload

    def _replies(self) -> list[tuple[int, int, bytes]]:
        """(type, seq, message bytes) of what one recv returned."""
        n = self.sock.recv_into(self.buffer)
        data = bytes(self.buffer[:n])
        out = []
        offset = 0
        while offset + 16 <= n:
            length, kind, _flags, seq, _pid = _HEADER.unpack_from(data, offset)
            if length < 16:
                break
            out.append((kind, seq, data[offset : offset + length]))
            offset += (length + 3) & ~3
        return out

    @staticmethod
    def _error_code(message: bytes) -> int:
        code: int = struct.unpack_from("=i", message, 16)[0]
        return -code

    def _roundtrip(self, family_id: int, cmd: int, payload: bytes, flags: int) -> bytes:
        """Send one request, return its one reply (or raise its error)."""
        seq, message = self._message(family_id, cmd, payload, flags)
        self.sock.send(message)
        while True:
            for kind, got, reply in self._replies():
                if got != seq:
                    continue
                if kind == NLMSG_ERROR:
                    code = self._error_code(reply)
                    if code:
                        raise NetlinkError(code)
                    return b""
                return reply

    # ------------------------------------------------------------------ API

    def request(self, cmd: int, payload: bytes, create: bool = False) -> None:
        """One request; raises NetlinkError with the kernel's reason."""
        flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE | NLM_F_EXCL if create else 0)
        self._roundtrip(self.family_id, cmd, payload, flags)

    def dump(self, cmd: int, payload: bytes = b"") -> list[bytes]:
        """The messages of a dump, each as raw bytes (netlink header included)."""
        seq, message = self._message(self.family_id, cmd, payload, NLM_F_REQUEST | NLM_F_DUMP)
        self.sock.send(message)
        out: list[bytes] = []
        while True:
            for kind, got, reply in self._replies():
                if got != seq:
                    continue
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    code = self._error_code(reply)
                    if code:
                        raise NetlinkError(code)
                    return out
                out.append(reply)

    def batch(
        self, requests: Sequence[tuple[int, bytes, bool]], stop_after_failure: bool = True
    ) -> list[tuple[int, NetlinkError]]:
        """Send ``(cmd, payload, create)`` requests in order, many per system call; return the
        failures as (index, error), in order. Requests not reported failed succeeded — except those
        never sent: with ``stop_after_failure`` nothing is sent after the chunk holding the first
        failure, and the caller learns where it stopped from ``self.sent``."""
        failures: list[tuple[int, NetlinkError]] = []
        index = 0
        self.sent = 0
        total = len(requests)
        while index < total:
            chunk: list[bytes] = []
            seqs: dict[int, int] = {}
            size = 0
            while index < total and len(chunk) < self.chunk_requests and (not chunk or size < CHUNK_BYTES):
                cmd, payload, create = requests[index]
                flags = NLM_F_REQUEST | (NLM_F_CREATE | NLM_F_EXCL if create else 0)
                seq, message = self._message(self.family_id, cmd, payload, flags)
                seqs[seq] = index
                chunk.append(message)
                size += len(message)
                index += 1
            # the chunk's last request asks for an ack: its answer comes after every earlier error
            last_seq = self.seq
            tail = bytearray(chunk[-1])
            struct.pack_into("=H", tail, 6, struct.unpack_from("=H", tail, 6)[0] | NLM_F_ACK)
            chunk[-1] = bytes(tail)
            self.sock.sendall(b"".join(chunk))
            self.sent = index
            done = False
            while not done:
                for kind, seq, reply in self._replies():
                    if kind != NLMSG_ERROR or seq not in seqs:
                        continue
                    code = self._error_code(reply)
                    if code:
                        failures.append((seqs[seq], NetlinkError(code)))
                    if seq == last_seq:
                        done = True
            if failures and stop_after_failure:
                break
        return failures
