"""The JSON-RPC client turns a reply cut short (a node killed mid-response,
as scenario 13 does a hundred times) into RpcTransportError, which callers
and the harness's LoadLoop treat as "retry", instead of letting
http.client.IncompleteRead escape and kill the caller's thread."""

from __future__ import annotations

import socket
import threading

import h11
import pytest

from rpc.client import RpcClient, RpcTransportError


def test_reply_cut_short_is_a_transport_error() -> None:
    """client: a reply cut short is RpcTransportError"""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve_one() -> None:
        conn, _ = server.accept()
        with conn:
            # Read the whole request first: closing with part of it unread
            # makes the kernel answer with a reset, and the client may then
            # see "connection reset" instead of the short reply under test.
            http = h11.Connection(h11.SERVER)
            while True:
                event = http.next_event()
                if event is h11.NEED_DATA:
                    http.receive_data(conn.recv(65536))
                elif type(event) is h11.EndOfMessage:
                    break
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 148\r\n\r\n{\"jsonrpc\"")

    t = threading.Thread(target=serve_one, daemon=True)
    t.start()
    try:
        with pytest.raises(RpcTransportError, match="broken reply"):
            RpcClient(f"http://127.0.0.1:{port}/", timeout_s=5).call("node.status")
    finally:
        t.join(5)
        server.close()
