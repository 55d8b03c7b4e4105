#!/usr/bin/env python3
"""An independent SIP digest client (hashlib, no tether code) for interop tests.

Usage: digest_client.py HOST PORT USER PASSWORD ALGORITHM
Sends REGISTER, answers the 401 challenge for ALGORITHM (MD5 or SHA-256,
qop=auth) and prints the final status code. Exits 2 on a protocol surprise.
"""
import hashlib
import random
import re
import socket
import sys

host, port, user, password, alg = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
H = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}[alg]

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
sock.settimeout(3)
lport = sock.getsockname()[1]
call_id = "%x@127.0.0.1" % random.getrandbits(64)


def register(cseq, authz=""):
    msg = (
        f"REGISTER sip:{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK{random.getrandbits(48):x};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{user}@{host}>;tag=py{cseq}\r\nTo: <sip:{user}@{host}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@127.0.0.1:{lport}>\r\n"
        f"{authz}Expires: 600\r\nContent-Length: 0\r\n\r\n"
    )
    sock.sendto(msg.encode(), (host, port))
    data, _ = sock.recvfrom(65535)
    return data.decode()


first = register(1)
if not first.startswith("SIP/2.0 401"):
    print("expected 401, got", first.splitlines()[0])
    sys.exit(2)
challenge = None
for line in first.split("\r\n"):
    if line.lower().startswith("www-authenticate:") and f"algorithm={alg}" in line:
        challenge = line
if challenge is None:
    print("no", alg, "challenge offered")
    sys.exit(2)
realm = re.search(r'realm="([^"]*)"', challenge).group(1)
nonce = re.search(r'nonce="([^"]*)"', challenge).group(1)
uri = f"sip:{host}:{port}"
cnonce, nc = "%x" % random.getrandbits(32), "00000001"
ha1 = H(f"{user}:{realm}:{password}".encode()).hexdigest()
ha2 = H(f"REGISTER:{uri}".encode()).hexdigest()
resp = H(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
authz = (
    f'Authorization: Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
    f'response="{resp}", algorithm={alg}, qop=auth, nc={nc}, cnonce="{cnonce}"\r\n'
)
final = register(2, authz)
print(final.splitlines()[0].split(" ")[1])
