#!/usr/bin/env python3
"""What a Kamailio user does for a contact-me fan-out to devices u0..u<N-1>
(the AORs `tether bench` registers): per device, one ul.lookup JSON-RPC call
to find its contact, then one tm.t_uac_start call sending the seed 000
NOTIFY. (ul.dump would be one call, but Kamailio's HTTP reply is capped at a
few MB, about 5,000 contacts.) Calls go over THREADS keep-alive HTTP
connections to Kamailio's jsonrpcs/xhttp endpoint.

Usage: kamailio_fanout.py RPC_HOST RPC_PORT THREADS N
Prints one JSON line: devices, seconds for the calls, devices per second,
devices not found, errors.
"""
import http.client
import json
import sys
import threading
import time

host, port, threads, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])


def rpc(conn, method, params):
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1})
    conn.request("POST", "/RPC", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    return json.loads(resp.read())


t1 = time.monotonic()
body = "RequestID=1\r\napplication_server_ip_addr=127.0.0.1\r\napplication_server_ip_port=8443\r\n"
errors = [0] * threads
missing = [0] * threads


def work(k):
    c = http.client.HTTPConnection(host, port, timeout=60)
    for i in range(k, n, threads):
        aor = f"u{i}"
        found = rpc(c, "ul.lookup", ["location", aor])
        try:
            addr = found["result"]["Contacts"][0]["Contact"]["Address"]
        except (KeyError, IndexError, TypeError):
            missing[k] += 1
            continue
        hdr = (
            f"From: <sip:tether@{host}>;tag=k{i}\r\nTo: <sip:{aor}@{host}>\r\n"
            "Event: application-server-contact-me\r\n"
            "Content-Type: application/application-server-contact-me\r\n"
        )
        r = rpc(c, "tm.t_uac_start", ["NOTIFY", addr, ".", ".", hdr, body])
        if "error" in r:
            errors[k] += 1


ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
t2 = time.monotonic()
print(json.dumps({
    "devices": n,
    "calls_s": round(t2 - t1, 2),
    "devices_per_s": round(n / max(t2 - t1, 1e-9)),
    "missing": sum(missing),
    "errors": sum(errors),
}))
