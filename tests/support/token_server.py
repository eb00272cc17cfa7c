#!/usr/bin/env python3
"""A minimal Docker registry token server for the bearer-auth tests.

Usage: token_server.py PORT KEY.pem CERT.pem ISSUER USER PASSWORD

Answers GET /token?service=..&scope=repository:NAME:ACTIONS with a JWT signed
(RS256, via the openssl command) by KEY, carrying CERT in its x5c header, as
the CNCF distribution registry's `auth: token` expects. Basic credentials must
match USER:PASSWORD; without them it hands out pull-only anonymous tokens for
nothing (an empty access list), like public registries do for private repos.
"""
import base64
import http.server
import json
import subprocess
import sys
import time
import urllib.parse

PORT, KEY, CERT, ISSUER, USER, PASSWORD = sys.argv[1:7]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cert_der() -> bytes:
    return subprocess.run(
        ["openssl", "x509", "-in", CERT, "-outform", "DER"], check=True, capture_output=True
    ).stdout


DER = cert_der()


def sign(payload: bytes) -> bytes:
    return subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", KEY], input=payload, check=True, capture_output=True
    ).stdout


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path != "/token":
            self.send_error(404)
            return
        q = urllib.parse.parse_qs(url.query)
        auth = self.headers.get("Authorization", "")
        authorised = auth == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if auth and not authorised:
            self.send_error(401)
            return
        access = []
        if authorised:
            for scope in q.get("scope", []):
                kind, name, actions = scope.split(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "x5c": [base64.b64encode(DER).decode()]}
        claims = {
            "iss": ISSUER,
            "sub": USER if authorised else "",
            "aud": q.get("service", [""])[0],
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": str(now),
            "access": access,
        }
        signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
        token = signing_input + "." + b64(sign(signing_input.encode()))
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


http.server.HTTPServer(("127.0.0.1", int(PORT)), Handler).serve_forever()
