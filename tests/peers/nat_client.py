#!/usr/bin/env python3
"""A SIP UA behind a NAT for the keepalive and contact-me tests: registers
(opting in to contact-me), then originates nothing for LISTEN seconds. It
answers what the server sends (keepalive OPTIONS, contact-me NOTIFY) with
200, as a device does, and reports when each arrived.

Usage: nat_client.py SERVER_IP SERVER_PORT USER LISTEN_SECS
Prints one JSON line: {"registered": bool, "options_at": [...], "notify_at": [...]}
(seconds since the REGISTER's 200).
"""
import json
import socket
import sys
import time

server, port, user, listen = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", 0))
# The address the server would see without a NAT; behind one it differs.
probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
probe.connect((server, port))
local_ip, local_port = probe.getsockname()[0], sock.getsockname()[1]
probe.close()
msg = (
    f"REGISTER sip:{server}:{port} SIP/2.0\r\n"
    f"Via: SIP/2.0/UDP {local_ip}:{local_port};branch=z9hG4bKnat1;rport\r\n"
    f"Max-Forwards: 70\r\nFrom: <sip:{user}@{server}>;tag=n1\r\nTo: <sip:{user}@{server}>\r\n"
    f"Call-ID: nat-{user}@{local_ip}\r\nCSeq: 1 REGISTER\r\n"
    f"Contact: <sip:{user}@{local_ip}:{local_port}>\r\n"
    f"Accept: application/application-server-contact-me\r\n"
    f"Expires: 600\r\nContent-Length: 0\r\n\r\n"
)


def ok(request: bytes) -> bytes:
    """A 200 for a request: its Via, From, To (tagged), Call-ID and CSeq."""
    head = request.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
    keep = [l for l in head[1:] if l.split(":", 1)[0].strip().lower() in ("via", "v", "from", "f", "call-id", "i", "cseq")]
    to = [l for l in head[1:] if l.split(":", 1)[0].strip().lower() in ("to", "t")]
    to = [t if ";tag=" in t else t + ";tag=dev1" for t in to]
    return ("SIP/2.0 200 OK\r\n" + "\r\n".join(keep + to) + "\r\nContent-Length: 0\r\n\r\n").encode()


registered = False
sock.settimeout(2)
for _ in range(3):
    sock.sendto(msg.encode(), (server, port))
    try:
        data, _ = sock.recvfrom(65535)
    except socket.timeout:
        continue
    if data.startswith(b"SIP/2.0 200"):
        registered = True
        break
start = time.monotonic()
seen = {"OPTIONS": [], "NOTIFY": []}
while registered and time.monotonic() - start < listen:
    sock.settimeout(max(0.1, listen - (time.monotonic() - start)))
    try:
        data, addr = sock.recvfrom(65535)
    except socket.timeout:
        break
    method = data.split(b" ", 1)[0].decode(errors="replace")
    if method in seen:
        seen[method].append(round(time.monotonic() - start, 1))
        sock.sendto(ok(data), addr)
print(json.dumps({"registered": registered, "options_at": seen["OPTIONS"], "notify_at": seen["NOTIFY"]}))
