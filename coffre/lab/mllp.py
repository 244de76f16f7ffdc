"""MLLP (Minimal Lower Layer Protocol) framing, a threaded listener and a one-shot client.

Pure Python (no Django). Message contents are never logged: they may hold patient data.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from collections.abc import Callable

START, END = b"\x0b", b"\x1c\x0d"
MAX_FRAME = 1024 * 1024  # larger frames are refused to bound memory per connection
IDLE_TIMEOUT = 300.0  # seconds; analysers keep connections open but not forever
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


def _decode(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode("latin-1")  # analysers often send ISO 8859-1


class _Handler(socketserver.BaseRequestHandler):
    server: _TcpServer

    def handle(self) -> None:
        self.request.settimeout(IDLE_TIMEOUT)
        buffer = bytearray()
        try:
            while self._receive(buffer):
                pass
        except OSError as exc:  # timeouts and resets end the connection quietly
            logger.info("MLLP connection ended: %s", type(exc).__name__)

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

    def __init__(self, address: tuple[str, int], handle: Callable[[str], str]) -> None:
        self.handle_message = handle
        super().__init__(address, _Handler)


class MllpServer:
    """Threaded TCP MLLP listener on localhost. `handle(message_text) -> ack_text` is called per
    framed message; the ACK is framed and sent back on the same connection; connections may send
    many messages. Bounded frame size (MAX_FRAME; larger -> connection closed)."""

    def __init__(
        self, handle: Callable[[str], str], host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._server = _TcpServer((host, port), handle)
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


def send(host: str, port: int, message: str, timeout: float = 5.0) -> str:
    """Send one framed message and return the ACK text."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
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
