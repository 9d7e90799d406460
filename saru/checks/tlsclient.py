"""TLS for the checks: the client context, a session per server for resumption, the handshake.

* **Context**: no certificate verification (ldirectord's ``verify_hostname => 0``), SNI when the
  check has a host name.
* **Sessions**: the session of a server's last full handshake is kept (per address, port and SNI)
  and offered on the next check, so that checks resume (TLS 1.3 tickets / TLS 1.2 session ids) and
  the server skips the certificate and key exchange work. A full handshake happens only when there
  is no session or the server refuses the one offered; its session then replaces the old one. A
  check whose connection, handshake or exchange failed forgets the server's session.
  ``configure(resume=False)`` (saru.toml ``[checks] tls_session_resumption = false``) forces a full
  handshake every time.
* **Handshake**: on the check's own non-blocking socket (``ssl.SSLSocket``), waiting on the event
  loop only when OpenSSL wants to read or write — no transport or protocol objects. The socket has
  ``TCP_NODELAY`` (as asyncio's transports and HAProxy's server connections): a resumed TLS 1.2
  handshake ends with the client's Finished, and the request written right after it would otherwise
  wait for the server's delayed ACK (~40 ms on Linux) — every resumed check stalled that long.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl

from saru.checks.tcp import wait_fd

#: sessions kept at most (one per checked TLS server); the oldest is dropped beyond it
MAX_SESSIONS = 65536

SessionKey = tuple[str, int, str]  # (address, port, SNI)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """Client TLS context without certificate verification (ldirectord's behaviour)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Sessions:
    """The TLS session of each checked server's last full handshake (see the module docstring)."""

    def __init__(self) -> None:
        self.resume = True
        self._sessions: dict[SessionKey, ssl.SSLSession] = {}
        self.full = 0  # completed exchanges after a full handshake
        self.resumed = 0  # … after a resumed one

    def offer(self, key: SessionKey) -> ssl.SSLSession | None:
        """The session to offer ``key`` (None: a full handshake)."""
        return self._sessions.get(key) if self.resume else None

    def handshake_done(self, key: SessionKey, tls: ssl.SSLSocket) -> None:
        """After a completed exchange: keep the session of a full handshake (a refused or absent one)."""
        if tls.session_reused:
            self.resumed += 1
            return
        self.full += 1
        if self.resume:
            session = tls.session
            if session is not None:
                self._sessions.pop(key, None)
                self._sessions[key] = session
                if len(self._sessions) > MAX_SESSIONS:
                    del self._sessions[next(iter(self._sessions))]

    def forget(self, key: SessionKey) -> None:
        """A connection to ``key`` failed: its next handshake starts afresh."""
        self._sessions.pop(key, None)

    def clear(self) -> None:
        self._sessions.clear()

    def __len__(self) -> int:
        return len(self._sessions)


SESSIONS = Sessions()


def configure(resume: bool) -> None:
    """Turn session resumption on (the default) or off (every check does a full handshake)."""
    SESSIONS.resume = resume
    if not resume:
        SESSIONS.clear()


async def handshake(sock: socket.socket, sni: str, session: ssl.SSLSession | None) -> ssl.SSLSocket:
    """TLS client handshake on the connected non-blocking ``sock`` (which the result now owns; on
    failure it is closed). ``session``: the one to offer for resumption."""
    loop = asyncio.get_running_loop()
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # see the module docstring
        tls = tls_context().wrap_socket(sock, server_hostname=sni or None, session=session,
                                        do_handshake_on_connect=False)
    except BaseException:
        sock.close()
        raise
    try:
        fd = tls.fileno()
        while True:
            try:
                tls.do_handshake()
                return tls
            except ssl.SSLWantReadError:
                await wait_fd(loop, fd, writable=False)
            except ssl.SSLWantWriteError:
                await wait_fd(loop, fd, writable=True)
    except BaseException:
        tls.close()
        raise
