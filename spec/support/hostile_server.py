"""A hostile gRPC peer for the hardening specs: the bytes a compromised or buggy server (or a
proxy) could send, which the real dev server never does. It is the adversary, not a stand-in
for Temporal: it answers every call on a port with the same canned reply, whatever was asked.

    python hostile_server.py PORT_FILE CONFIG_JSON

CONFIG_JSON is a list of replies, one listening port each (127.0.0.1, ephemeral):
    {"status": 0..16, "message": "grpc-message", "details": "<hex of grpc-status-details-bin>",
     "body": "<hex of the response message>"}   (every key optional)
PORT_FILE receives the ports, one line each, in the same order, once all are listening.

Just enough HTTP/2 to answer a gRPC call: the preface, SETTINGS (acknowledged), PING
(answered), and per stream, once the client ends it: response headers, the message in DATA
frames, then trailers. Header blocks are HPACK literals without indexing or Huffman coding;
what the client sends is not decoded at all.
"""
import base64
import json
import selectors
import socket
import struct
import sys

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, SETTINGS, PING, GOAWAY = 0, 1, 4, 6, 7
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


def hpack_int(value, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def header_block(pairs):
    out = b""
    for name, value in pairs:
        name, value = name.encode(), value if isinstance(value, bytes) else value.encode()
        out += b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value
    return out


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def reply(config, stream):
    out = frame(HEADERS, END_HEADERS, stream,
                header_block([(":status", "200"), ("content-type", "application/grpc")]))
    body = config.get("body")
    if body is not None:
        msg = bytes.fromhex(body)
        data = b"\x00" + struct.pack(">I", len(msg)) + msg
        for i in range(0, len(data), 16384):
            out += frame(DATA, 0, stream, data[i:i + 16384])
    trailers = [("grpc-status", str(config.get("status", 0)))]
    if config.get("message") is not None:
        trailers.append(("grpc-message", config["message"]))
    if config.get("details") is not None:
        raw = bytes.fromhex(config["details"])
        trailers.append(("grpc-status-details-bin", base64.b64encode(raw).rstrip(b"=")))
    return out + frame(HEADERS, END_HEADERS | END_STREAM, stream, header_block(trailers))


class Conn:
    def __init__(self, sock, config):
        self.sock, self.config, self.buf, self.greeted = sock, config, b"", False

    def feed(self, data):
        self.buf += data
        if not self.greeted:
            if len(self.buf) < len(PREFACE):
                return
            self.buf = self.buf[len(PREFACE):]
            self.greeted = True
            self.sock.sendall(frame(SETTINGS, 0, 0))
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[0:3], "big")
            if len(self.buf) < 9 + length:
                return
            kind, flags = self.buf[3], self.buf[4]
            stream = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload = self.buf[9:9 + length]
            self.buf = self.buf[9 + length:]
            if kind == SETTINGS and not flags & ACK:
                self.sock.sendall(frame(SETTINGS, ACK, 0))
            elif kind == PING and not flags & ACK:
                self.sock.sendall(frame(PING, ACK, 0, payload))
            elif kind in (HEADERS, DATA) and flags & END_STREAM and stream:
                self.sock.sendall(reply(self.config, stream))


def main():
    port_file, configs = sys.argv[1], json.loads(sys.argv[2])
    sel = selectors.DefaultSelector()
    ports = []
    for config in configs:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        sel.register(server, selectors.EVENT_READ, ("listen", config))
        ports.append(server.getsockname()[1])
    with open(port_file + ".tmp", "w") as f:
        f.write("".join("%d\n" % p for p in ports))
    import os
    os.rename(port_file + ".tmp", port_file)
    while True:
        for key, _ in sel.select():
            kind, data = key.data
            if kind == "listen":
                sock, _ = key.fileobj.accept()
                sel.register(sock, selectors.EVENT_READ, ("conn", Conn(sock, data)))
                continue
            try:
                chunk = key.fileobj.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                sel.unregister(key.fileobj)
                key.fileobj.close()
                continue
            try:
                data.feed(chunk)
            except OSError:
                sel.unregister(key.fileobj)
                key.fileobj.close()


if __name__ == "__main__":
    main()
