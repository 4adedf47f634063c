"""A plain TCP forwarder for the keep-alive spec: 127.0.0.1:<listen> -> <target>.

    python forwarder.py LISTEN_PORT TARGET_HOST:PORT

Frozen with SIGSTOP it stops forwarding while the kernel still accepts (and ACKs) what
the client sends: a peer that silently drops traffic, which only keep-alive pings detect.
"""
import selectors
import socket
import sys

listen_port = int(sys.argv[1])
host, port = sys.argv[2].rsplit(":", 1)

sel = selectors.DefaultSelector()
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", listen_port))
server.listen(16)
sel.register(server, selectors.EVENT_READ, None)
peers = {}


def close(sock):
    other = peers.pop(sock, None)
    for s in (sock, other):
        if s is not None:
            try:
                sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()
    if other is not None:
        peers.pop(other, None)


while True:
    for key, _ in sel.select():
        sock = key.fileobj
        if sock is server:
            client, _ = server.accept()
            try:
                upstream = socket.create_connection((host, int(port)))
            except OSError:
                client.close()
                continue
            peers[client], peers[upstream] = upstream, client
            sel.register(client, selectors.EVENT_READ, None)
            sel.register(upstream, selectors.EVENT_READ, None)
            continue
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            close(sock)
            continue
        try:
            peers[sock].sendall(data)
        except (OSError, KeyError):
            close(sock)
