#!/usr/bin/env python3
"""A stand-in for the few Azure APIs tele uses, written from Azure's public
REST documentation (nothing real of Azure can run here):

- Microsoft Entra ID's token endpoint, v1 client credentials grant:
  POST /{tenant}/oauth2/token with grant_type=client_credentials, client_id,
  client_secret and resource; errors as {"error", "error_description"} with
  the AADSTS codes Azure gives (90002 unknown tenant, 7000215 wrong secret,
  700016 unknown application).
- Azure Resource Manager, read only: GET a resource group
  (/subscriptions/S/resourceGroups/G) and a VM
  (.../providers/Microsoft.Compute/virtualMachines/V), each with an
  api-version and a bearer token; errors as {"error": {"code", "message"}}
  (AuthenticationFailed 401, AuthorizationFailed 403, ResourceGroupNotFound
  and ResourceNotFound 404, MissingApiVersionParameter 400).

Tokens are opaque strings naming their principal ("standin.PRINCIPAL.N");
the metadata stand-in (imds.py) hands out the same form for the VM's managed
identity. Prints "listening on PORT" once it listens.

usage: azure_arm.py --tenant T --subscription S --resource-group G --vm NAME
       [--client ID:SECRET]... [--reader PRINCIPAL]... [--listen HOST:PORT]
"""

import argparse
import itertools
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--tenant", required=True)
    ap.add_argument("--subscription", required=True)
    ap.add_argument("--resource-group", required=True)
    ap.add_argument("--vm", required=True)
    ap.add_argument("--location", default="westeurope")
    ap.add_argument("--client", action="append", default=[])
    ap.add_argument("--reader", action="append", default=[])
    ap.add_argument("--log")
    args = ap.parse_args()
    clients = dict(c.split(":", 1) for c in args.client)
    log = open(args.log, "a", buffering=1) if args.log else open("/dev/null", "w")
    serial = itertools.count(1)
    lock = threading.Lock()
    group_id = f"/subscriptions/{args.subscription}/resourceGroups/{args.resource_group}"
    vm_id = f"{group_id}/providers/Microsoft.Compute/virtualMachines/{args.vm}"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            pass

        def answer(self, status, doc):
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            print(f"{self.command} {urlparse(self.path).path} {status}", file=log, flush=True)

        def do_POST(self):
            path = urlparse(self.path).path
            m = re.fullmatch(r"/([^/]+)/oauth2/token", path)
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(min(length, 65536)).decode()).items()}
            if not m:
                return self.answer(404, {"error": "not_found"})
            if m.group(1) != args.tenant:
                return self.answer(400, {"error": "invalid_request", "error_description":
                                         f"AADSTS90002: Tenant '{m.group(1)}' not found."})
            if form.get("grant_type") != "client_credentials" or not form.get("resource"):
                return self.answer(400, {"error": "invalid_request", "error_description":
                                         "AADSTS900144: The request body must contain the following parameter: 'grant_type'."})
            client = form.get("client_id", "")
            if client not in clients:
                return self.answer(400, {"error": "unauthorized_client", "error_description":
                                         f"AADSTS700016: Application with identifier '{client}' was not found in the directory."})
            if form.get("client_secret") != clients[client]:
                return self.answer(401, {"error": "invalid_client", "error_description":
                                         "AADSTS7000215: Invalid client secret provided."})
            with lock:
                n = next(serial)
            self.answer(200, {"token_type": "Bearer", "expires_in": "3599", "ext_expires_in": "3599",
                              "expires_on": "4102444800", "not_before": "1700000000",
                              "resource": form["resource"], "access_token": f"standin.{client}.{n}"})

        def do_GET(self):
            url = urlparse(self.path)
            if not parse_qs(url.query).get("api-version"):
                return self.answer(400, {"error": {"code": "MissingApiVersionParameter", "message":
                                                   "The api-version query parameter (?api-version=) is required for all requests."}})
            auth = self.headers.get("Authorization", "")
            m = re.fullmatch(r"Bearer standin\.(.+)\.\d+", auth)
            if not m:
                return self.answer(401, {"error": {"code": "AuthenticationFailed", "message":
                                                   "Authentication failed. The 'Authorization' header is missing or invalid."}})
            principal = m.group(1)
            path = url.path.rstrip("/")
            lowered = path.lower()
            if lowered not in (group_id.lower(), vm_id.lower()):
                if lowered.startswith(group_id.lower() + "/"):
                    return self.answer(404, {"error": {"code": "ResourceNotFound", "message":
                                                       f"The Resource '{path}' was not found."}})
                return self.answer(404, {"error": {"code": "ResourceGroupNotFound", "message":
                                                   f"Resource group '{path}' could not be found."}})
            action = ("Microsoft.Resources/subscriptions/resourceGroups/read" if lowered == group_id.lower()
                      else "Microsoft.Compute/virtualMachines/read")
            if principal not in args.reader:
                return self.answer(403, {"error": {"code": "AuthorizationFailed", "message":
                                                   f"The client '{principal}' with object id '{principal}' does not have "
                                                   f"authorization to perform action '{action}' over scope '{path}' "
                                                   "or the scope is invalid. If access was recently granted, please "
                                                   "refresh your credentials."}})
            if lowered == group_id.lower():
                return self.answer(200, {"id": group_id, "name": args.resource_group, "type":
                                         "Microsoft.Resources/resourceGroups", "location": args.location,
                                         "properties": {"provisioningState": "Succeeded"}})
            self.answer(200, {"id": vm_id, "name": args.vm, "type": "Microsoft.Compute/virtualMachines",
                              "location": args.location,
                              "properties": {"provisioningState": "Succeeded",
                                             "osProfile": {"computerName": args.vm}}})

    host, port = args.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
