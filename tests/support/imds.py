#!/usr/bin/env python3
"""A stand-in for a cloud's instance metadata service, for tests.

AWS (IMDSv2 only, as an instance with `HttpTokens: required`; the values
the Kubernetes AWS provider and the SDKs read: instance, placement, the
network interface, the instance profile's credentials): `PUT
/latest/api/token` needs `X-aws-ec2-metadata-token-ttl-seconds` (1-21600)
and answers a token, with its time to live in the same header; every `GET /latest/meta-data/...` needs that token in
`X-aws-ec2-metadata-token` (401 without, or once it has expired); requests
with `X-Forwarded-For` are refused (403), as AWS refuses them.

Azure: `GET /metadata/instance?api-version=...` needs `Metadata: true` and an
`api-version` (400 otherwise, with Azure's error text), and refuses
`X-Forwarded-For`; the answer is the compute and network document of the
2021-02-01 API, written from Azure's IMDS documentation.

`--stall` accepts connections and never answers (a black hole).

Prints `listening on PORT` once it serves; with `--log FILE`, logs each
request (method, path, status) there.
"""

import argparse
import json
import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--cloud", choices=["aws", "azure"], default="aws")
    ap.add_argument("--stall", action="store_true")
    ap.add_argument("--instance-id", default="i-0123456789abcdef0")
    ap.add_argument("--region", default="eu-west-1")
    ap.add_argument("--zone", default="eu-west-1a")
    ap.add_argument("--instance-type", default="m5.large")
    ap.add_argument("--hostname", default="ip-10-0-1-23.eu-west-1.compute.internal")
    ap.add_argument("--local-ipv4", default="10.0.1.23")
    ap.add_argument("--resource-group", default="shop")
    ap.add_argument("--subscription", default="8d10da13-8125-4ba9-a717-bf7490507b3d")
    ap.add_argument("--mac", default="0e:12:34:56:78:9a")
    ap.add_argument("--role", default="tele-node")
    ap.add_argument("--ami-id", default="ami-12c6146b")
    ap.add_argument("--subnet-id", default="subnet-0a1b2c3d4e5f60718")
    ap.add_argument("--security-group-id", default="sg-0a1b2c3d4e5f60718")
    ap.add_argument("--instance-profile-arn",
                    default="arn:aws:iam::123456789012:instance-profile/tele-node")
    # The role's key as ID:SECRET, when the APIs check it (an IAM user's key
    # in moto, which then wants no session token); by default a made-up one.
    ap.add_argument("--role-key")
    # Azure: the principal of the VM's managed identity (see azure_arm.py).
    ap.add_argument("--identity", default="vm-identity")
    ap.add_argument("--log")
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    log = open(args.log, "a", buffering=1) if args.log else open("/dev/null", "w")

    if args.stall:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
        sock.listen(64)
        print(f"listening on {sock.getsockname()[1]}", flush=True)
        held = []
        while True:
            conn, _ = sock.accept()
            held.append(conn)

    tokens = {}
    lock = threading.Lock()

    aws_values = {
        "instance-id": args.instance_id,
        "placement/region": args.region,
        "placement/availability-zone": args.zone,
        "instance-type": args.instance_type,
        "local-hostname": args.hostname,
        "local-ipv4": args.local_ipv4,
        "hostname": args.hostname,
        "mac": args.mac,
        "network/interfaces/macs/": f"{args.mac}/",
        f"network/interfaces/macs/{args.mac}/device-number": "0",
        f"network/interfaces/macs/{args.mac}/local-ipv4s": args.local_ipv4,
        f"network/interfaces/macs/{args.mac}/local-hostname": args.hostname,
        f"network/interfaces/macs/{args.mac}/subnet-id": args.subnet_id,
        f"network/interfaces/macs/{args.mac}/security-group-ids": args.security_group_id,
        "ami-id": args.ami_id,
        "iam/info": json.dumps({"Code": "Success", "InstanceProfileArn": args.instance_profile_arn,
                                "InstanceProfileId": "AIPATELETESTPROFILE01"}),
        # The instance profile's role, whose credentials the SDKs fetch
        # (any key is good for moto unless it checks IAM: see --role-key).
        "iam/security-credentials/": args.role,
    }
    role_credentials = {
        "Code": "Success",
        "LastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "Type": "AWS-HMAC",
        "AccessKeyId": "ASIATELETESTROLE0001",
        "SecretAccessKey": "tele-test-secret-key-of-the-instance-role",
        "Token": "tele-test-session-token",
        "Expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 6 * 3600)),
    }
    if args.role_key:
        key_id, secret = args.role_key.split(":", 1)
        role_credentials.update(AccessKeyId=key_id, SecretAccessKey=secret)
        del role_credentials["Token"]
    role_credentials = json.dumps(role_credentials)
    aws_values[f"iam/security-credentials/{args.role}"] = role_credentials
    computer = args.hostname.split(".")[0]
    azure_doc = {
        "compute": {
            "azEnvironment": "AzurePublicCloud",
            "location": args.region,
            "name": computer,
            "osProfile": {"adminUsername": "azureuser", "computerName": computer},
            "osType": "Linux",
            "resourceGroupName": args.resource_group,
            "resourceId": f"/subscriptions/{args.subscription}/resourceGroups/"
            f"{args.resource_group}/providers/Microsoft.Compute/virtualMachines/{computer}",
            "subscriptionId": args.subscription,
            "vmId": args.instance_id,
            "vmSize": args.instance_type,
            "zone": args.zone,
        },
        "network": {
            "interface": [
                {
                    "ipv4": {
                        "ipAddress": [
                            {"privateIpAddress": args.local_ipv4, "publicIpAddress": ""}
                        ],
                        "subnet": [{"address": "10.0.1.0", "prefix": "24"}],
                    }
                }
            ]
        },
    }

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            pass

        def answer(self, status, body, ctype="text/plain", headers=()):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            print(f"{self.command} {self.path} {status}", file=log, flush=True)

        def do_PUT(self):
            if args.cloud != "aws":
                return self.answer(404, "not found")
            if self.headers.get("X-Forwarded-For"):
                return self.answer(403, "Forbidden")
            if urlparse(self.path).path != "/latest/api/token":
                return self.answer(404, "not found")
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
            if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                return self.answer(400, "Bad Request")
            token = secrets.token_urlsafe(32)
            with lock:
                tokens[token] = time.monotonic() + int(ttl)
            # The token's time to live, echoed as AWS does (the SDKs read it).
            self.answer(200, token, headers=[("X-aws-ec2-metadata-token-ttl-seconds", ttl)])

        def do_GET(self):
            if args.cloud == "aws":
                return self.aws_get()
            return self.azure_get()

        def aws_get(self):
            if self.headers.get("X-Forwarded-For"):
                return self.answer(403, "Forbidden")
            token = self.headers.get("X-aws-ec2-metadata-token", "")
            with lock:
                valid = tokens.get(token, 0) > time.monotonic()
            if not valid:
                return self.answer(401, "Unauthorized")
            path = urlparse(self.path).path
            prefix = "/latest/meta-data/"
            value = aws_values.get(path[len(prefix):]) if path.startswith(prefix) else None
            if value is None:
                return self.answer(404, "Not Found")
            self.answer(200, value)

        def azure_get(self):
            url = urlparse(self.path)
            if self.headers.get("X-Forwarded-For"):
                return self.answer(
                    400, json.dumps({"error": "Bad request. Request contains X-Forwarded-For header"}),
                    "application/json")
            if (self.headers.get("Metadata") or "").lower() != "true":
                return self.answer(
                    400, json.dumps({"error": "Bad request. Required metadata header not specified"}),
                    "application/json")
            if not parse_qs(url.query).get("api-version"):
                return self.answer(
                    400, json.dumps({"error": "Bad request. api-version was not specified in the request."}),
                    "application/json")
            if url.path == "/metadata/identity/oauth2/token":
                # The VM's managed identity: a token for the resource asked,
                # in the form azure_arm.py accepts.
                resource = parse_qs(url.query).get("resource", [""])[0]
                if not resource:
                    return self.answer(400, json.dumps({"error": "invalid_request", "error_description":
                                                        "Required query variable 'resource' is missing"}),
                                       "application/json")
                return self.answer(200, json.dumps({
                    "access_token": f"standin.{args.identity}.1", "expires_in": "3599",
                    "expires_on": "4102444800", "not_before": "1700000000", "resource": resource,
                    "token_type": "Bearer"}), "application/json")
            if url.path != "/metadata/instance":
                return self.answer(404, json.dumps({"error": "Not found"}), "application/json")
            self.answer(200, json.dumps(azure_doc), "application/json")

    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
