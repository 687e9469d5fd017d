#!/usr/bin/env python3
"""Verifies an imagegen webhook (Standard Webhooks signature), with Python's standard library only.

Use `verify()` in a receiver, or run it:

    webhook_verify.py --id MSG_ID --timestamp TS --signature 'v1,... v1,...' \
        --secret whsec_... [--secret whsec_...] [--tolerance 300] BODY_FILE

It prints `valid` and exits 0, or prints `invalid: <why>` and exits 1. `--tolerance 0` skips the
timestamp check (for replaying stored requests).
"""

import argparse
import base64
import hashlib
import hmac
import sys
import time


def verify(secrets, msg_id, timestamp, signature_header, body, tolerance=300, now=None):
    """Returns None when valid, else the reason. `body` is the raw request body (bytes)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return "webhook-timestamp is not a number"
    now = int(time.time()) if now is None else now
    if tolerance and abs(now - ts) > tolerance:
        return "webhook-timestamp is too far from now"
    content = f"{msg_id}.{ts}.".encode() + body
    offered = [part.split(",", 1)[1] for part in signature_header.split(" ") if part.startswith("v1,")]
    for secret in secrets:
        key = base64.b64decode(secret[len("whsec_"):] if secret.startswith("whsec_") else secret)
        expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return None
    return "no signature matches"


def main():
    parser = argparse.ArgumentParser(description="Verify a Standard Webhooks signature.")
    parser.add_argument("--id", required=True)
    parser.add_argument("--timestamp", required=True)
    parser.add_argument("--signature", required=True)
    parser.add_argument("--secret", action="append", required=True)
    parser.add_argument("--tolerance", type=int, default=300)
    parser.add_argument("body_file")
    args = parser.parse_args()
    with open(args.body_file, "rb") as handle:
        body = handle.read()
    problem = verify(args.secret, args.id, args.timestamp, args.signature, body, args.tolerance)
    if problem:
        print(f"invalid: {problem}")
        return 1
    print("valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
