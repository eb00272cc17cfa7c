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

- Provisioning, as much of Compute and Network as tele uses: GET of this
  VM (its NIC, image, admin user and SSH keys), of a NIC (its subnet and
  network security group), of a subnet and an NSG; PUT of a NIC
  (InvalidResourceReference for a subnet or NSG that is not there) and of
  a VM (its NICs must exist; a size not offered is SkuNotAvailable 409; past
  --max-vms, OperationNotAllowed 409 with the cores-quota message); DELETE
  of a VM, which deletes its NICs and OS disk when their deleteOption is
  Delete. customData is never returned, as Azure does; GET
  /_standin/resources lists everything, custom data included, for the
  tests.
- Authorization: each principal's permissions on the resource group, as
  role definitions give them: --reader is Azure's built-in Reader
  (actions */read), --contributor its Contributor (actions *, but not
  Microsoft.Authorization's writes and deletes), --role
  PRINCIPAL=ACTION,ACTION... a role of those actions plus */read. Every
  request is checked against them (a NIC's subnet and network security
  group need their join/action too: LinkedAuthorizationFailed), and GET
  .../resourceGroups/G/providers/Microsoft.Authorization/permissions lists
  the caller's, as Resource Manager does.
- Managed identities and role assignments: a VM made with a
  system-assigned identity gets one (identity.principalId, a new GUID, whose
  tokens name it); PUT .../resourceGroups/G/providers/Microsoft.Authorization/
  roleAssignments/NAME with properties.roleDefinitionId (the built-in Reader
  or Contributor) and principalId (PrincipalNotFound for one that does not
  exist, RoleAssignmentExists 409 for the same role of the same principal
  under another name) gives that principal the role on the group.

Tokens are opaque strings naming their principal ("standin.PRINCIPAL.N");
the metadata stand-in (imds.py) hands out the same form for the VM's managed
identity. Prints "listening on PORT" once it listens.

usage: azure_arm.py --tenant T --subscription S --resource-group G --vm NAME
       [--client ID:SECRET]... [--reader PRINCIPAL]... [--contributor PRINCIPAL]...
       [--role PRINCIPAL=ACTION,...]... [--max-vms N] [--listen HOST:PORT]
       [--user-identity NAME] [--first-address IP]

--user-identity gives this VM a user-assigned identity of that name (whose
tokens name it as their principal); --first-address is the first private
address a new NIC gets (then the next ones).
"""

import argparse
import base64
import itertools
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def provider_type(path):
    """`Microsoft.X/kind` of a resource id (its last type segment)."""
    parts = path.strip("/").split("/")
    if "providers" in parts:
        i = len(parts) - 1 - parts[::-1].index("providers")
        return f"{parts[i + 1]}/{parts[i + 2]}" if len(parts) > i + 2 else parts[-1]
    return "Microsoft.Resources/subscriptions/resourceGroups"


READER = {"actions": ["*/read"], "notActions": [], "dataActions": [], "notDataActions": []}
CONTRIBUTOR = {"actions": ["*"], "notActions": [
    "Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write",
    "Microsoft.Authorization/elevateAccess/Action", "Microsoft.Blueprint/blueprintAssignments/write",
    "Microsoft.Blueprint/blueprintAssignments/delete"], "dataActions": [], "notDataActions": []}


# Azure's built-in roles by their definitions' GUIDs.
BUILT_IN = {"acdd72a7-3385-48ef-bd42-f606fba81ae7": READER,
            "b24988ac-6180-42a0-ab88-20f7382dd24c": CONTRIBUTOR}


def covers(pattern, action):
    """Whether a role definition's action pattern covers `action` (`*` is
    any text; case is ignored)."""
    regex = ".*".join(re.escape(p) for p in pattern.lower().split("*"))
    return re.fullmatch(regex, action.lower()) is not None


def granted(entries, action):
    return any(any(covers(p, action) for p in e["actions"])
               and not any(covers(p, action) for p in e["notActions"]) for e in entries)


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
    ap.add_argument("--contributor", action="append", default=[])
    ap.add_argument("--role", action="append", default=[])
    ap.add_argument("--max-vms", type=int, default=100)
    ap.add_argument("--sizes", default="Standard_D2s_v3,Standard_D4s_v3,Standard_B2s")
    ap.add_argument("--log")
    ap.add_argument("--user-identity")
    ap.add_argument("--first-address", default="10.0.1.24")
    args = ap.parse_args()
    clients = dict(c.split(":", 1) for c in args.client)
    permissions = {}
    for p in args.reader:
        permissions.setdefault(p, []).append(READER)
    for p in args.contributor:
        permissions.setdefault(p, []).append(CONTRIBUTOR)
    for r in args.role:
        principal, actions = r.split("=", 1)
        permissions.setdefault(principal, []).extend([READER, {
            "actions": actions.split(","), "notActions": [], "dataActions": [], "notDataActions": []}])
    log = open(args.log, "a", buffering=1) if args.log else open("/dev/null", "w")
    serial = itertools.count(1)
    lock = threading.Lock()
    group_id = f"/subscriptions/{args.subscription}/resourceGroups/{args.resource_group}"
    vm_id = f"{group_id}/providers/Microsoft.Compute/virtualMachines/{args.vm}"
    net = f"{group_id}/providers/Microsoft.Network"
    subnet_id = f"{net}/virtualNetworks/{args.resource_group}-vnet/subnets/nodes"
    nsg_id = f"{net}/networkSecurityGroups/{args.resource_group}-nsg"
    nic_id = f"{net}/networkInterfaces/{args.vm}-nic"
    # Resources by lower-cased id: what this VM stands in, and what is made.
    resources = {
        vm_id.lower(): {"id": vm_id, "name": args.vm, "type": "Microsoft.Compute/virtualMachines",
                        "location": args.location, "properties": {
                            "provisioningState": "Succeeded",
                            "hardwareProfile": {"vmSize": "Standard_D4s_v3"},
                            "storageProfile": {"imageReference": {
                                "publisher": "Debian", "offer": "debian-12", "sku": "12-gen2",
                                "version": "latest"}},
                            "osProfile": {"computerName": args.vm, "adminUsername": "azureuser",
                                          "linuxConfiguration": {
                                              "disablePasswordAuthentication": True,
                                              "ssh": {"publicKeys": [{
                                                  "path": "/home/azureuser/.ssh/authorized_keys",
                                                  "keyData": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyOfTheAdmin admin"}]}}},
                            "networkProfile": {"networkInterfaces": [{"id": nic_id}]}},
                        **({"identity": {"type": "UserAssigned", "userAssignedIdentities": {
                            f"/subscriptions/{args.subscription}/resourceGroups/{args.resource_group}/providers/"
                            f"Microsoft.ManagedIdentity/userAssignedIdentities/{args.user_identity}": {
                                "principalId": args.user_identity, "clientId": args.user_identity}}}}
                           if args.user_identity else {})},
        nic_id.lower(): {"id": nic_id, "name": f"{args.vm}-nic", "location": args.location,
                         "type": "Microsoft.Network/networkInterfaces",
                         "properties": {"provisioningState": "Succeeded",
                                        "networkSecurityGroup": {"id": nsg_id},
                                        "ipConfigurations": [{"name": "ipconfig1", "properties": {
                                            "privateIPAddress": "10.0.1.23", "subnet": {"id": subnet_id}}}]}},
        subnet_id.lower(): {"id": subnet_id, "name": "nodes", "properties": {"addressPrefix": "10.0.1.0/24"}},
        nsg_id.lower(): {"id": nsg_id, "name": f"{args.resource_group}-nsg", "location": args.location,
                         "properties": {"securityRules": []}},
    }
    custom_data = {}
    first = args.first_address.rsplit(".", 1)
    addresses = (f"{first[0]}.{n}" for n in itertools.count(int(first[1])))

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
            if url.path == "/_standin/resources":
                return self.standin_resources()
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
            if lowered == (group_id + "/providers/Microsoft.Authorization/permissions").lower():
                return self.answer(200, {"value": permissions.get(principal, [])})
            if lowered == group_id.lower():
                action = "Microsoft.Resources/subscriptions/resourceGroups/read"
                if not granted(permissions.get(principal, []), action):
                    return self.denied(principal, action, path)
                return self.answer(200, {"id": group_id, "name": args.resource_group, "type":
                                         "Microsoft.Resources/resourceGroups", "location": args.location,
                                         "properties": {"provisioningState": "Succeeded"}})
            if not lowered.startswith(group_id.lower() + "/"):
                return self.answer(404, {"error": {"code": "ResourceGroupNotFound", "message":
                                                   f"Resource group '{path}' could not be found."}})
            if not granted(permissions.get(principal, []), f"{provider_type(path)}/read"):
                return self.denied(principal, f"{provider_type(path)}/read", path)
            with lock:
                doc = resources.get(lowered)
            if doc is None:
                return self.answer(404, {"error": {"code": "ResourceNotFound", "message":
                                                   f"The Resource '{path}' was not found."}})
            self.answer(200, doc)

        def denied(self, principal, action, path):
            return self.answer(403, {"error": {"code": "AuthorizationFailed", "message":
                                               f"The client '{principal}' with object id '{principal}' does not have "
                                               f"authorization to perform action '{action}' over scope '{path}' "
                                               "or the scope is invalid. If access was recently granted, please "
                                               "refresh your credentials."}})

        def writer(self):
            """The principal of a write request, or None once answered."""
            url = urlparse(self.path)
            if not parse_qs(url.query).get("api-version"):
                self.answer(400, {"error": {"code": "MissingApiVersionParameter", "message":
                                            "The api-version query parameter (?api-version=) is required for all requests."}})
                return None
            m = re.fullmatch(r"Bearer standin\.(.+)\.\d+", self.headers.get("Authorization", ""))
            if not m:
                self.answer(401, {"error": {"code": "AuthenticationFailed", "message":
                                            "Authentication failed. The 'Authorization' header is missing or invalid."}})
                return None
            path = url.path.rstrip("/")
            action = f"{provider_type(path)}/{'delete' if self.command == 'DELETE' else 'write'}"
            if not granted(permissions.get(m.group(1), []), action):
                self.denied(m.group(1), action, path)
                return None
            return m.group(1)

        def do_PUT(self):
            principal = self.writer()
            if principal is None:
                return
            path = urlparse(self.path).path.rstrip("/")
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(min(length, 1 << 20)) or b"{}")
            except ValueError:
                return self.answer(400, {"error": {"code": "InvalidRequestContent", "message":
                                                   "The request content was invalid and could not be deserialized."}})
            kind = provider_type(path)
            props = body.get("properties", {})
            with lock:
                existed = path.lower() in resources
                if kind == "Microsoft.Network/networkInterfaces":
                    links = [(c.get("properties", {}).get("subnet", {}).get("id", ""),
                              "Microsoft.Network/virtualNetworks/subnets/join/action")
                             for c in props.get("ipConfigurations", [])]
                    if props.get("networkSecurityGroup"):
                        links.append((props["networkSecurityGroup"].get("id", ""),
                                      "Microsoft.Network/networkSecurityGroups/join/action"))
                    for ref, action in links:
                        if not granted(permissions.get(principal, []), action):
                            return self.answer(403, {"error": {"code": "LinkedAuthorizationFailed", "message":
                                                               f"The client '{principal}' has permission to perform action "
                                                               f"'Microsoft.Network/networkInterfaces/write' on scope '{path}'; "
                                                               f"however, it does not have permission to perform action '{action}' "
                                                               f"on the linked scope(s) '{ref}' or the linked scope(s) are invalid."}})
                    for ref in [c.get("properties", {}).get("subnet", {}).get("id", "") for c in props.get("ipConfigurations", [])] + \
                               [props.get("networkSecurityGroup", {}).get("id", nsg_id)]:
                        if ref.lower() not in resources:
                            return self.answer(400, {"error": {"code": "InvalidResourceReference", "message":
                                                               f"Resource {ref} referenced by resource {path} was not found."}})
                    for c in props.get("ipConfigurations", []):
                        c.setdefault("properties", {})["privateIPAddress"] = next(addresses)
                elif kind == "Microsoft.Compute/virtualMachines":
                    size = props.get("hardwareProfile", {}).get("vmSize", "")
                    if size not in args.sizes.split(","):
                        return self.answer(409, {"error": {"code": "SkuNotAvailable", "message":
                                                           f"The requested VM size '{size}' is not available in location '{args.location}'."}})
                    for nic in props.get("networkProfile", {}).get("networkInterfaces", []):
                        if nic.get("id", "").lower() not in resources:
                            return self.answer(400, {"error": {"code": "InvalidResourceReference", "message":
                                                               f"Resource {nic.get('id')} referenced by resource {path} was not found."}})
                    vms = [r for r in resources.values() if r.get("type") == "Microsoft.Compute/virtualMachines"]
                    if not existed and len(vms) >= args.max_vms:
                        return self.answer(409, {"error": {"code": "OperationNotAllowed", "message":
                                                           "Operation could not be completed as it results in exceeding approved Total Regional Cores quota."}})
                    os_profile = props.get("osProfile", {})
                    if "customData" in os_profile:
                        custom_data[path.lower()] = os_profile.pop("customData")
                    identity = body.get("identity") or {}
                    if identity.get("type") == "SystemAssigned" and not identity.get("principalId"):
                        kept = resources.get(path.lower(), {}).get("identity", {}).get("principalId")
                        identity["principalId"] = kept or str(uuid.uuid4())
                        identity["tenantId"] = args.tenant
                    disk = props.get("storageProfile", {}).get("osDisk", {})
                    if disk.get("name"):
                        disk_id = f"{group_id}/providers/Microsoft.Compute/disks/{disk['name']}"
                        resources[disk_id.lower()] = {"id": disk_id, "name": disk["name"],
                                                      "type": "Microsoft.Compute/disks", "properties": {}}
                        disk["managedDisk"] = {"id": disk_id}
                elif kind == "Microsoft.Authorization/roleAssignments":
                    role = props.get("roleDefinitionId", "").rsplit("/", 1)[-1]
                    principal_id = props.get("principalId", "")
                    known = {r.get("identity", {}).get("principalId") for r in resources.values()}
                    if role not in BUILT_IN:
                        return self.answer(400, {"error": {"code": "RoleDefinitionDoesNotExist", "message":
                                                           f"The specified role definition with ID '{role}' does not exist."}})
                    if principal_id not in known - {None}:
                        return self.answer(400, {"error": {"code": "PrincipalNotFound", "message":
                                                           f"Principal {principal_id} does not exist in the directory {args.tenant}."}})
                    for r in resources.values():
                        rp = r.get("properties", {})
                        if r.get("type") == kind and r["id"].lower() != path.lower() and \
                                rp.get("principalId") == principal_id and rp.get("roleDefinitionId", "").endswith(role):
                            return self.answer(409, {"error": {"code": "RoleAssignmentExists", "message":
                                                               "The role assignment already exists."}})
                    if not existed:
                        permissions.setdefault(principal_id, []).append(BUILT_IN[role])
                    props["scope"] = group_id
                else:
                    return self.answer(400, {"error": {"code": "NoRegisteredProviderFound", "message":
                                                       f"The stand-in does not make {kind}."}})
                props["provisioningState"] = "Succeeded"
                doc = dict(body, id=path, name=path.rsplit("/", 1)[1], type=kind, properties=props)
                resources[path.lower()] = doc
            self.answer(200 if existed else 201, doc)

        def do_DELETE(self):
            if self.writer() is None:
                return
            path = urlparse(self.path).path.rstrip("/")
            with lock:
                doc = resources.pop(path.lower(), None)
                if doc is None:
                    return self.answer(204, {})
                props = doc.get("properties", {})
                for nic in props.get("networkProfile", {}).get("networkInterfaces", []):
                    if nic.get("properties", {}).get("deleteOption") == "Delete":
                        resources.pop(nic["id"].lower(), None)
                disk = props.get("storageProfile", {}).get("osDisk", {})
                if disk.get("deleteOption") == "Delete" and disk.get("managedDisk"):
                    resources.pop(disk["managedDisk"]["id"].lower(), None)
                custom_data.pop(path.lower(), None)
            self.answer(200, {})

        def standin_resources(self):
            with lock:
                listed = [dict(r, customData=custom_data.get(k),
                               customDataText=base64.b64decode(custom_data[k]).decode() if k in custom_data else None)
                          for k, r in resources.items()]
            self.answer(200, listed)

    host, port = args.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
