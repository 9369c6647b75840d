"""A small blocking WebSocket client on wsproto, for the bridge channel tests."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)


class WebSocketRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"refused with HTTP {status}")
        self.status = status


class WebSocketClient:
    def __init__(self, url: str, timeout: float = 10) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        self.ws = WSConnection(ConnectionType.CLIENT)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        self.sock.sendall(self.ws.send(Request(host=parts.netloc, target=target)))
        self.messages: list[str] = []
        self._partial = ""
        while True:
            for event in self._events():
                if isinstance(event, AcceptConnection):
                    return
                if isinstance(event, RejectConnection):
                    raise WebSocketRefused(event.status_code)

    def _events(self) -> list[object]:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.ws.receive_data(data)
        events = []
        for event in self.ws.events():
            if isinstance(event, TextMessage):
                self._partial += event.data
                if event.message_finished:
                    self.messages.append(self._partial)
                    self._partial = ""
            elif isinstance(event, RejectData | CloseConnection):
                continue
            events.append(event)
        return events

    def send(self, text: str) -> None:
        self.sock.sendall(self.ws.send(TextMessage(data=text)))

    def receive(self) -> str:
        while not self.messages:
            self._events()
        return self.messages.pop(0)

    def close(self) -> None:
        self.sock.close()
