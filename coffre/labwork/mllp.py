"""MLLP (Minimal Lower Layer Protocol) framing, a threaded listener and a one-shot client.

The listener reads only connections from its allow-list of analyser addresses (others
are closed before a byte is read) and, with a TLS context, only from analysers holding
a client certificate of the configured CA (``server_tls``).

Pure Python (no Django). Message contents are never logged: they may hold patient data.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

START, END = b"\x0b", b"\x1c\x0d"
MAX_FRAME = 1024 * 1024  # larger frames are refused to bound memory per connection
IDLE_TIMEOUT = 300.0  # seconds; analysers keep connections open but not forever
HANDSHAKE_TIMEOUT = 10.0  # seconds for a TLS client to finish its handshake
_CHUNK = 65536

logger = logging.getLogger(__name__)


def frame(message: str) -> bytes:
    """Wrap a message in MLLP framing, UTF-8 encoded."""
    return START + message.encode("utf-8") + END


def read_frames(buffer: bytearray) -> list[bytes]:
    """Pop every complete frame from `buffer` (in place); a partial frame stays for later."""
    frames: list[bytes] = []
    while True:
        start = buffer.find(START)
        if start < 0:
            buffer.clear()  # bytes outside any frame are noise
            return frames
        del buffer[:start]
        end = buffer.find(END, 1)
        if end < 0:
            return frames
        frames.append(bytes(buffer[1:end]))
        del buffer[: end + len(END)]


class AllowList:
    """The analyser addresses (IPs or networks, e.g. ``10.0.0.5`` or ``10.0.0.0/28``)
    whose connections a listener reads. An IPv4 address seen as IPv4-mapped IPv6 (a
    dual-stack socket) counts as itself."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in entries:
            try:
                self.networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{entry.strip()!r} is not an IP address or network"
                                 ) from None

    @classmethod
    def parse(cls, text: str) -> AllowList:
        """From a comma- or space-separated list ("127.0.0.1, 10.0.0.0/28")."""
        return cls(entry for entry in re.split(r"[,\s]+", text) if entry)

    def __contains__(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __str__(self) -> str:
        return ",".join(str(n.network_address) if n.num_addresses == 1 else str(n)
                        for n in self.networks)


def server_tls(cert: Path, key: Path, client_ca: Path) -> ssl.SSLContext:
    """TLS 1.2+ for the listener: its certificate and key, and the CA whose client
    certificates analysers must present (no certificate, no connection). Raises
    OSError or ssl.SSLError naming an unreadable or unusable file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.load_verify_locations(cafile=client_ca)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _decode(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode("latin-1")  # analysers often send ISO 8859-1


class _Handler(socketserver.BaseRequestHandler):
    server: _TcpServer

    def handle(self) -> None:
        if self.server.tls is not None and not self._handshake():
            return
        self.request.settimeout(IDLE_TIMEOUT)
        buffer = bytearray()
        try:
            while self._receive(buffer):
                pass
        except OSError as exc:  # timeouts and resets end the connection quietly
            logger.info("MLLP connection ended: %s", type(exc).__name__)
        finally:
            if self.server.tls is not None:
                self.request.close()  # the TLS socket took over the connection

    def _handshake(self) -> bool:
        """Wrap the connection in TLS; False (logged, closed) when the client has no
        valid certificate of the configured CA or does not speak TLS."""
        self.request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            self.request = self.server.tls.wrap_socket(self.request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            logger.warning("MLLP TLS handshake from %s refused: %s", self.client_address[0],
                           reason)
            return False
        subject = dict(item for rdn in self.request.getpeercert().get("subject", ())
                       for item in rdn)
        logger.info("MLLP TLS connection from %s, certificate %r", self.client_address[0],
                    subject.get("commonName", "?"))
        return True

    def _receive(self, buffer: bytearray) -> bool:
        """Read once and answer complete frames; False ends the connection."""
        chunk = self.request.recv(_CHUNK)
        if not chunk:
            return False
        buffer += chunk
        for payload in read_frames(buffer):
            if not self._answer(payload):
                return False
        if len(buffer) > MAX_FRAME:
            logger.warning("MLLP frame larger than %d bytes; closing connection", MAX_FRAME)
            return False
        return True

    def _answer(self, payload: bytes) -> bool:
        try:
            ack = self.server.handle_message(_decode(payload))
        except Exception as exc:  # the callback must NAK itself; anything else closes
            logger.error("MLLP handler failed: %s", type(exc).__name__)
            return False
        self.request.sendall(frame(ack))
        return True


class _TcpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handle: Callable[[str], str],
                 allowed: AllowList, tls: ssl.SSLContext | None) -> None:
        self.handle_message = handle
        self.allowed = allowed
        self.tls = tls
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def verify_request(self, request: socket.socket, client_address: tuple) -> bool:
        """Before any byte is read: an address off the allow-list is closed at once."""
        if client_address[0] in self.allowed:
            return True
        logger.warning("MLLP connection from %s refused: not an allowed analyser address",
                       client_address[0])
        return False


class MllpServer:
    """Threaded TCP MLLP listener (localhost by default). Only connections from ``allowed``
    addresses are read, others closed unread; with ``tls`` (``server_tls``), only
    analysers presenting a client certificate of its CA. `handle(message_text) ->
    ack_text` is called per framed message; the ACK is framed and sent back on the same
    connection; connections may send many messages. Bounded frame size (MAX_FRAME;
    larger -> connection closed)."""

    def __init__(
        self, handle: Callable[[str], str], host: str = "127.0.0.1", port: int = 0, *,
        allowed: AllowList, tls: ssl.SSLContext | None = None,
    ) -> None:
        self._server = _TcpServer((host, port), handle, allowed, tls)
        self._thread: threading.Thread | None = None
        self._serving = False

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def serve_forever(self) -> None:
        self._serving = True
        self._server.serve_forever()

    def start_background(self) -> None:
        self._serving = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="mllp-server", daemon=True
        )
        self._thread.start()

    def shutdown(self) -> None:
        # BaseServer.shutdown() waits for serve_forever, so only call it once serving.
        if self._serving:
            self._server.shutdown()
            self._serving = False
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def send(host: str, port: int, message: str, timeout: float = 5.0, *,
         tls: ssl.SSLContext | None = None) -> str:
    """Send one framed message and return the ACK text (over TLS with ``tls``, a client
    context holding the analyser's certificate)."""
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        sock = tls.wrap_socket(raw, server_hostname=host) if tls else raw
    except BaseException:
        raw.close()
        raise
    with sock:
        sock.sendall(frame(message))
        buffer = bytearray()
        while len(buffer) <= MAX_FRAME:
            chunk = sock.recv(_CHUNK)
            if not chunk:
                break
            buffer += chunk
            frames = read_frames(buffer)
            if frames:
                return _decode(frames[0])
    raise ConnectionError("connection closed before an MLLP acknowledgment was received")
