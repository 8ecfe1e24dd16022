#!/usr/bin/env python3
"""bench/lib/signed_message.py DIR SIZE DOMAIN SELECTOR

Writes DIR/message (a message of about SIZE body bytes from sender@DOMAIN,
DKIM-signed rsa-sha256 by dkimpy with a new 2048-bit key, lines ending in
LF as smtp-source -F wants them; it adds the CRs back) and prints the
public key's TXT record value (v=DKIM1; k=rsa; p=...) on stdout.
Debian's python3-dkim and the openssl command; no network.
"""

import base64
import subprocess
import sys

import dkim

out, size, domain, selector = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
key = subprocess.run(["openssl", "genrsa", "2048"], check=True, capture_output=True).stdout
der = subprocess.run(
    ["openssl", "rsa", "-pubout", "-outform", "DER"], input=key, check=True, capture_output=True
).stdout
line = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
body = (line * (size // len(line) + 1))[:size]
body = body[: body.rfind("\r\n") + 2]
message = (
    f"From: Sender <sender@{domain}>\r\n"
    f"To: rcpt@{domain}\r\n"
    "Subject: a signed benchmark message\r\n"
    "Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
    f"Message-ID: <bench@{domain}>\r\n"
    "\r\n" + body
).encode()
signature = dkim.sign(
    message, selector.encode(), domain.encode(), key,
    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
)
with open(f"{out}/message", "wb") as f:
    f.write((signature + message).replace(b"\r\n", b"\n"))
assert dkim.verify(signature + message, dnsfunc=lambda name, timeout=5: (
    b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)))
print("v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode())
