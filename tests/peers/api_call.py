#!/usr/bin/env python3
"""One call to tether's control API from inside a network namespace.

Usage: api_call.py METHOD URL TOKEN [BODY]
Prints the status code, a space, and the response body on one line.
"""
import sys
import urllib.error
import urllib.request

method, url, token = sys.argv[1], sys.argv[2], sys.argv[3]
body = sys.argv[4].encode() if len(sys.argv) > 4 else None
req = urllib.request.Request(url, data=body, method=method)
req.add_header("Authorization", f"Bearer {token}")
req.add_header("Content-Type", "application/json")
try:
    with urllib.request.urlopen(req, timeout=10) as resp:
        print(resp.status, resp.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
