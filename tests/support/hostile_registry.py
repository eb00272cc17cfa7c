"""A registry that lies, for tests/hostile.rs:

    python3 hostile_registry.py PORT [--realm URL] [--other-host IP] [--log FILE]

The repository's name says how it misbehaves:
  evil/oversize   its layer's descriptor says 100 bytes, it sends 10 MiB;
  evil/stall      its layer trickles 50 bytes, then nothing for ten minutes;
  evil/huge       its manifest is 8 MiB;
  evil/garbage    its manifest is not JSON;
  evil/trickle    its 1 MiB layer comes at 32 KiB a second;
  evil/vast       its manifest is 1 GiB, sent as fast as it is read;
  evil/noisy      its manifest is an HTTP 500 with a 1 GiB body;
  evil/redirect   its layer is a redirect to /elsewhere/ on --other-host (another
                  address of this server), as storage backends do;
  evil/noisyblob  its layer is an HTTP 500 with a 1 GiB body.
With --realm, the registry wants a bearer token from that token service (this
server answers /token itself with the token "t", and /token-vast with a 1 GiB
answer); with --switch-realm URL as well, a request that brings that token is
answered 401 naming the token service URL instead (a registry that steers the
credentials elsewhere after its first challenge); --log FILE gets one line per
request: PATH and the scheme of its Authorization header, or "-".
"""
import hashlib
import http.server
import json
import sys
import time

CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
LAYER = b"x" * 100
BIG = b"z" * (1 << 20)


def digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def manifest(layer=LAYER):
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(CONFIG), "size": len(CONFIG)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest(layer), "size": len(layer)}],
    }).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body, ctype="application/json", length=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def challenge(self, realm):
        self.send_response(401)
        self.send_header("WWW-Authenticate", f'Bearer realm="{realm}",service="hostile"')
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def flood(self, status):
        """1 GiB of "a", as fast as it is read."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(1 << 30))
        self.end_headers()
        try:
            chunk = b"a" * (1 << 20)
            for _ in range(1024):
                self.wfile.write(chunk)
        except OSError:
            pass

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = self.path.split("?")[0]
        auth = self.headers.get("Authorization", "-")
        if LOG:
            with open(LOG, "a") as f:
                f.write(f"{path} {auth.split(' ')[0]}\n")
        if path == "/token" or path == "/token-switched":
            return self.send(200, b'{"token":"t"}')
        if path == "/token-vast":
            return self.flood(200)
        if path.startswith("/elsewhere/"):
            return self.send(200, LAYER, "application/octet-stream")
        if REALM and auth != "Bearer t":
            return self.challenge(REALM)
        if SWITCH and path != "/v2/" and auth == "Bearer t":
            return self.challenge(SWITCH)
        if path == "/v2/":
            return self.send(200, b"{}")
        parts = path.split("/")
        mode = parts[3] if len(parts) > 3 else ""
        if "/manifests/" in path and mode in ("vast", "noisy"):
            return self.flood(200 if mode == "vast" else 500)
        if "/blobs/" in path and mode == "noisyblob" and parts[-1] == digest(LAYER):
            return self.flood(500)
        if "/manifests/" in path:
            if mode == "huge":
                body = b'{"schemaVersion":2,"pad":"' + b"a" * (8 << 20) + b'"}'
            elif mode == "garbage":
                body = b"\x00\xffnot a manifest"
            elif mode == "trickle":
                body = manifest(BIG)
            else:
                body = manifest()
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.send_header("Docker-Content-Digest", digest(body))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        if "/blobs/" in path:
            d = parts[-1]
            if d == digest(CONFIG):
                return self.send(200, CONFIG, "application/octet-stream")
            if d == digest(BIG):
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(BIG)))
                self.end_headers()
                try:
                    for i in range(0, len(BIG), 32 << 10):
                        self.wfile.write(BIG[i:i + (32 << 10)])
                        self.wfile.flush()
                        time.sleep(1)
                except OSError:
                    pass
                return
            if d == digest(LAYER):
                if mode == "oversize":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(10 << 20))
                    self.end_headers()
                    try:
                        for _ in range(160):
                            self.wfile.write(b"y" * 65536)
                    except OSError:
                        pass
                    return
                if mode == "stall":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(LAYER)))
                    self.end_headers()
                    try:
                        self.wfile.write(LAYER[:50])
                        self.wfile.flush()
                        time.sleep(600)
                    except OSError:
                        pass
                    return
                if mode == "redirect":
                    elsewhere = f"http://{OTHER}:{sys.argv[1]}/elsewhere/{d}"
                    self.send_response(307)
                    self.send_header("Location", elsewhere)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                return self.send(200, LAYER, "application/octet-stream")
        self.send(404, b'{"errors":[{"code":"NOT_FOUND"}]}')


def option(name):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else None


REALM = option("--realm")
SWITCH = option("--switch-realm")
LOG = option("--log")
OTHER = option("--other-host")
http.server.ThreadingHTTPServer.daemon_threads = True
# A client that gives up mid-answer is what these tests expect: no tracebacks.
http.server.ThreadingHTTPServer.handle_error = lambda *args: None
# Every address: a test names this server by a second, non-loopback address.
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
