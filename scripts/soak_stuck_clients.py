#!/usr/bin/env python3
"""Clients that push large messages and never read (issue #23's soak).

Keeps N connections open to a ws:// server; each upgrades with a 4 KiB
receive buffer, writes 1 MiB masked frames (binary, or text on every third
connection) until TCP holds it back, and never reads. When the server ends
one (its idle timeout), it opens another. Runs for the given seconds, then
prints one line: connections opened, ended by the server, bytes written.
Standard library only.
"""
import os
import selectors
import socket
import struct
import sys
import time

host, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
SIZE = 1 << 20
REQUEST = (
    b"GET /soak HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def frame(opcode):
    payload = (b"abcdefghijklmnopqrstuvwxyz" * (SIZE // 26 + 1))[:SIZE]
    # Mask key 0: the masked payload is the payload itself.
    return bytes([0x80 | opcode, 0x80 | 127]) + struct.pack(">Q", SIZE) + b"\0\0\0\0" + payload


FRAMES = {1: frame(1), 2: frame(2)}
sel = selectors.DefaultSelector()
opened = ended = written = 0
serial = 0


def open_one():
    global opened, serial
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect((host, port))
    s.sendall(REQUEST)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise OSError(head.split(b"\r\n")[0].decode())
    s.setblocking(False)
    serial += 1
    opcode = 1 if serial % 3 == 0 else 2
    sel.register(s, selectors.EVENT_WRITE, [FRAMES[opcode], 0])
    opened += 1


def replace(s):
    """A connection the server ended: count it and open another."""
    global ended
    sel.unregister(s)
    s.close()
    ended += 1
    try:
        open_one()
    except OSError as e:
        print(f"reconnect failed: {e}", file=sys.stderr)


deadline = time.time() + seconds
for _ in range(count):
    open_one()
while time.time() < deadline:
    for key, _ in sel.select(timeout=0.5):
        s, state = key.fileobj, key.data
        data, off = state
        try:
            n = s.send(data[off:])
            written += n
            state[1] = (off + n) % len(data)
        except BlockingIOError:
            pass
        except OSError:
            # Ended by the server (idle timeout): a new one takes its place.
            replace(s)
    # A connection the server dropped while it was held back shows up only
    # as an error on the next write; probe the ones that are not writable.
    for key in list(sel.get_map().values()):
        s = key.fileobj
        try:
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == 0 and s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                err = -1
        except BlockingIOError:
            err = 0
        except OSError:
            err = -1
        if err:
            replace(s)
print(f"stuck clients: opened {opened}, ended by the server {ended}, wrote {written >> 20} MiB")
