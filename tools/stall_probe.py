"""Stalled request bodies against a running `lte serve`: does it keep answering?

    python tools/stall_probe.py --url http://127.0.0.1:8765 --sockets 500 --sources 1

Opens --sockets raw connections from --sources loopback addresses (127.0.1.x; other hosts: 1
source, the machine's own address) that each send headers and half a body, then probes
`/healthz` and `/v1/query` every 2 s and prints each probe's status and time; at the end, how the
server answered the stalled connections (429 at once, 408 after the body deadline, or still
open). Writes need no token here; with `auth: all` set LTE_API_TOKEN.
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from collections import Counter
from urllib.parse import urlsplit

import httpx


def stall(host: str, port: int, source: str | None, token: str | None) -> socket.socket:
    s = socket.socket()
    if source:
        s.bind((source, 0))
    s.settimeout(10)
    s.connect((host, port))
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    s.sendall(f"POST /v1/query HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
              f"{auth}Content-Length: 400\r\n\r\n{{\"question\": \"Wh".encode())
    return s


def answer(s: socket.socket) -> str:
    s.settimeout(0.05)
    try:
        head = s.recv(64)
    except TimeoutError:
        return "open"
    except OSError as e:
        return type(e).__name__
    return head.split(b" ")[1].decode() if head else "closed"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--sockets", type=int, default=500)
    p.add_argument("--sources", type=int, default=1, help="loopback source addresses")
    p.add_argument("--probes", type=int, default=6)
    args = p.parse_args()
    url = urlsplit(args.url)
    token = os.environ.get("LTE_API_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    loopback = url.hostname in ("127.0.0.1", "localhost")
    t0 = time.monotonic()
    stalled = [stall(url.hostname, url.port, f"127.0.1.{2 + i % args.sources}" if loopback
                     else None, token) for i in range(args.sockets)]
    print(f"{len(stalled)} stalled connections from {args.sources if loopback else 1} "
          f"address(es) in {time.monotonic() - t0:.1f} s", flush=True)
    with httpx.Client(base_url=args.url, timeout=30, headers=headers) as http:
        for _ in range(args.probes):
            time.sleep(2)
            for method, path, body in (("GET", "/healthz", None),
                                       ("POST", "/v1/query", {"question": "Where is Lyon?",
                                                              "generate": False})):
                t = time.monotonic()
                try:
                    status = str(http.request(method, path, json=body).status_code)
                except httpx.HTTPError as e:
                    status = type(e).__name__
                print(f"t={t - t0:5.1f} s  {path:10s} {status}  {time.monotonic() - t:.2f} s",
                      flush=True)
    print(f"stalled connections after {time.monotonic() - t0:.1f} s:",
          dict(Counter(answer(s) for s in stalled)))
    for s in stalled:
        s.close()


if __name__ == "__main__":
    main()
