#!/usr/bin/env python3
"""Verify a Herald webhook request (Standard Webhooks, HMAC-SHA256).

Standard library only. Use verify() in your receiver, on the raw request
body, before decoding the JSON:

    from webhook_verify import verify, WebhookVerificationError
    try:
        verify(["whsec_..."], request.headers, raw_body)
    except WebhookVerificationError:
        return 401

Command line, exit status 0 if and only if the request is valid:

    WEBHOOK_SECRET=whsec_... python3 webhook_verify.py \
        --id "$ID" --timestamp "$TS" --signature "$SIG" < body.json

--secret may be given instead of WEBHOOK_SECRET (note that arguments are
visible to other users of the machine), and repeated: during a rotation a
receiver may hold the old and the new secret. WEBHOOK_SECRET may hold several
secrets separated by spaces.
"""

import argparse
import base64
import hashlib
import hmac
import os
import sys
import time

DEFAULT_TOLERANCE_SECONDS = 5 * 60


class WebhookVerificationError(Exception):
    """The request is not a valid, fresh Herald webhook."""


def _decode_secret(secret):
    if not secret.startswith("whsec_"):
        raise WebhookVerificationError("secret must start with whsec_")
    try:
        return base64.b64decode(secret[len("whsec_"):], validate=True)
    except ValueError as exc:
        raise WebhookVerificationError("secret is not base64") from exc


def verify(secrets, headers, body, now=None, tolerance=DEFAULT_TOLERANCE_SECONDS):
    """Raise WebhookVerificationError unless the request is valid.

    secrets: the endpoint's secrets ("whsec_..."), any of which may match.
    headers: a mapping of the request headers (any letter case).
    body: the raw request body, as bytes.
    """
    if isinstance(secrets, str):
        secrets = [secrets]
    keys = [_decode_secret(s) for s in secrets]
    if not keys:
        raise WebhookVerificationError("no secrets")
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get("webhook-id", "")
    timestamp = lower.get("webhook-timestamp", "")
    signatures = lower.get("webhook-signature", "")
    if not msg_id or not timestamp or not signatures:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise WebhookVerificationError("invalid webhook-timestamp")
    now = time.time() if now is None else now
    # The timestamp is signed, so an old request cannot be replayed with a
    # new one; rejecting stale ones is the replay protection.
    if abs(now - int(timestamp)) > tolerance:
        raise WebhookVerificationError("webhook-timestamp outside tolerance")

    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = [hmac.new(k, signed, hashlib.sha256).digest() for k in keys]
    for sig in signatures.split():
        version, _, encoded = sig.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except ValueError:
            continue
        for want in expected:
            if hmac.compare_digest(given, want):
                return
    raise WebhookVerificationError("no matching signature")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Verify a Herald webhook; the body is read from stdin.")
    parser.add_argument("--secret", action="append", default=[], help="whsec_... (repeatable; default $WEBHOOK_SECRET)")
    parser.add_argument("--id", required=True, help="webhook-id header")
    parser.add_argument("--timestamp", required=True, help="webhook-timestamp header")
    parser.add_argument("--signature", required=True, help="webhook-signature header")
    parser.add_argument("--tolerance", type=int, default=DEFAULT_TOLERANCE_SECONDS, help="seconds (default 300)")
    args = parser.parse_args(argv)
    secrets = args.secret or os.environ.get("WEBHOOK_SECRET", "").split()
    if not secrets:
        parser.error("no secret: pass --secret or set WEBHOOK_SECRET")
    headers = {"webhook-id": args.id, "webhook-timestamp": args.timestamp, "webhook-signature": args.signature}
    try:
        verify(secrets, headers, sys.stdin.buffer.read(), tolerance=args.tolerance)
    except WebhookVerificationError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    print("valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
