#!/usr/bin/python3
"""A stand-in for `kapacitord`, written from Kapacitor's documented user API
(`/kapacitor/v1/ping`, `POST /kapacitor/v1/users`, `PATCH
/kapacitor/v1/users/NAME`; user types `normal` and `admin`; permissions
`none`, `api`, `config_api`, `write_points`, `all`), since Kapacitor
itself cannot be had here (tests/monitoring.rs runs the Kapacitor pod's init
container against it). It listens on `KAPACITOR_HTTP_BIND_ADDRESS`,
keeps its users in `$STANDIN_DIR/users.json` (as Kapacitor keeps them in
its data directory across restarts), logs each request to
`requests.jsonl`, and records in `exposed` any process whose command line
holds a password it is being sent. `STANDIN_REFUSE=1` makes the user API
answer 500.
"""
import http.server, json, os

d = os.environ["STANDIN_DIR"]
host, port = os.environ["KAPACITOR_HTTP_BIND_ADDRESS"].rsplit(":", 1)
store = os.path.join(d, "users.json")
users = json.load(open(store)) if os.path.exists(store) else {}
PERMISSIONS = {"none", "api", "config_api", "write_points", "all"}
with open(os.path.join(d, "pid"), "w") as f:
    f.write(str(os.getpid()))

def save():
    with open(store + ".tmp", "w") as f:
        json.dump(users, f)
    os.replace(store + ".tmp", store)

def exposed(secret):
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = open("/proc/%s/cmdline" % pid, "rb").read().decode(errors="replace")
        except OSError:
            continue
        if secret and secret in argv:
            with open(os.path.join(d, "exposed"), "a") as f:
                f.write(argv.replace("\0", " ") + "\n")

def invalid(u):
    if "type" in u and u["type"] not in ("normal", "admin"):
        return "invalid user type"
    if "permissions" in u and not set(u["permissions"]) <= PERMISSIONS:
        return "invalid permission"
    if "password" in u and not u["password"]:
        return "empty password"
    return None

class H(http.server.BaseHTTPRequestHandler):
    def answer(self, status, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            b = json.loads(raw)
        except ValueError:
            return None
        exposed(b.get("password", ""))
        with open(os.path.join(d, "requests.jsonl"), "a") as f:
            f.write(json.dumps([self.command, self.path]) + "\n")
        return b

    def do_GET(self):
        if self.path == "/kapacitor/v1/ping":
            return self.answer(204)
        self.answer(404, {"error": "not found"})

    def do_POST(self):
        if self.path != "/kapacitor/v1/users":
            return self.answer(404, {"error": "not found"})
        u = self.body()
        if os.environ.get("STANDIN_REFUSE") == "1":
            return self.answer(500, {"error": "refused"})
        if not isinstance(u, dict) or not u.get("name"):
            return self.answer(400, {"error": "invalid user"})
        if invalid(u) or "password" not in u:
            return self.answer(400, {"error": invalid(u) or "password required"})
        if u["name"] in users:
            return self.answer(400, {"error": "user already exists"})
        users[u["name"]] = {k: u[k] for k in ("password", "type", "permissions") if k in u}
        save()
        self.answer(200, {"name": u["name"]})

    def do_PATCH(self):
        prefix = "/kapacitor/v1/users/"
        name = self.path[len(prefix):] if self.path.startswith(prefix) else ""
        u = self.body()
        if os.environ.get("STANDIN_REFUSE") == "1":
            return self.answer(500, {"error": "refused"})
        if name not in users:
            return self.answer(404, {"error": "user does not exist"})
        if not isinstance(u, dict) or invalid(u):
            return self.answer(400, {"error": "invalid user"})
        users[name].update({k: u[k] for k in ("password", "type", "permissions") if k in u})
        save()
        self.answer(200, {"name": name})

    def log_message(self, *a):
        pass

http.server.HTTPServer((host, int(port)), H).serve_forever()
