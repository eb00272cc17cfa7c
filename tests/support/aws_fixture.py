#!/usr/bin/env python3
"""Makes, in an AWS API (moto's server in the tests), what an admin has
before installing a cluster on AWS: a VPC, a subnet for the nodes tagged for
the cluster and for internal load balancers, a security group, an instance
profile for the nodes, and the instance of the first node at a given
private address. Prints what it made
as JSON.

usage: aws_fixture.py ENDPOINT REGION ZONE CIDR IP CLUSTER
       aws_fixture.py load-balancers ENDPOINT REGION   (lists the ELBs, see load_balancers)
       aws_fixture.py iam-users ENDPOINT DENIED-ACTION...  (two users' keys)
       aws_fixture.py instances ENDPOINT REGION         (every instance)
       aws_fixture.py volumes ENDPOINT REGION           (every EBS volume)
"""

import base64
import json
import sys

import boto3


def clients(endpoint, region):
    kw = dict(endpoint_url=endpoint, region_name=region,
              aws_access_key_id="fixture", aws_secret_access_key="fixture")
    return boto3.client("ec2", **kw)


def load_balancers(endpoint, region):
    """The classic load balancers in the region, with their tags.

    AWS gives a new classic load balancer a default health check (TCP to the
    first listener's instance port, every 30 s); moto leaves it without one,
    and the Kubernetes 1.20 AWS provider, which reads it, then fails on a
    nil pointer. So a load balancer without one gets AWS's default here, as
    AWS would have given it."""
    kw = dict(endpoint_url=endpoint, region_name=region,
              aws_access_key_id="fixture", aws_secret_access_key="fixture")
    elb = boto3.client("elb", **kw)
    found = []
    for lb in elb.describe_load_balancers()["LoadBalancerDescriptions"]:
        listeners = lb.get("ListenerDescriptions", [])
        if not lb.get("HealthCheck", {}).get("Target") and listeners:
            port = listeners[0]["Listener"]["InstancePort"]
            lb["HealthCheck"] = elb.configure_health_check(
                LoadBalancerName=lb["LoadBalancerName"],
                HealthCheck={"Target": f"TCP:{port}", "Interval": 30, "Timeout": 5,
                             "UnhealthyThreshold": 2, "HealthyThreshold": 10})["HealthCheck"]
        tags = elb.describe_tags(LoadBalancerNames=[lb["LoadBalancerName"]])["TagDescriptions"]
        found.append({
            "name": lb["LoadBalancerName"],
            "dns": lb["DNSName"],
            "scheme": lb.get("Scheme"),
            "subnets": lb.get("Subnets", []),
            "instances": [i["InstanceId"] for i in lb.get("Instances", [])],
            "listeners": [d["Listener"] for d in lb.get("ListenerDescriptions", [])],
            "tags": {t["Key"]: t["Value"] for d in tags for t in d.get("Tags", [])},
            "health_check": lb.get("HealthCheck", {}),
        })
    return found


def iam_users(endpoint, denied):
    """Two IAM users and their keys: one may use EC2 and classic ELB
    entirely, the other the same except the actions in `denied` (an
    explicit deny). Six requests, all before moto starts checking
    (INITIAL_NO_AUTH_ACTION_COUNT=6)."""
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="fixture", aws_secret_access_key="fixture")
    allow = {"Effect": "Allow", "Action": ["ec2:*", "elasticloadbalancing:*"], "Resource": "*"}
    made = {}
    for user, statements in [("nodes-full", [allow]),
                             ("nodes-restricted", [allow, {"Effect": "Deny", "Action": denied, "Resource": "*"}])]:
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="nodes",
                            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        made[user] = f"{key['AccessKeyId']}:{key['SecretAccessKey']}"
    return made


def instances(endpoint, region):
    """Every instance: its id, state, type, subnet, security groups, tags
    and user data (decoded)."""
    kw = dict(endpoint_url=endpoint, region_name=region,
              aws_access_key_id="fixture", aws_secret_access_key="fixture")
    ec2 = boto3.client("ec2", **kw)
    found = []
    for r in ec2.describe_instances()["Reservations"]:
        for i in r["Instances"]:
            data = ec2.describe_instance_attribute(InstanceId=i["InstanceId"], Attribute="userData")
            user_data = data.get("UserData", {}).get("Value")
            found.append({
                "id": i["InstanceId"],
                "state": i["State"]["Name"],
                "type": i["InstanceType"],
                "image": i.get("ImageId"),
                "subnet": i.get("SubnetId"),
                "private_ip": i.get("PrivateIpAddress"),
                "instance_profile": i.get("IamInstanceProfile", {}).get("Arn"),
                "private_dns": i.get("PrivateDnsName"),
                "security_groups": [g["GroupId"] for g in i.get("SecurityGroups", [])],
                "tags": {t["Key"]: t["Value"] for t in i.get("Tags", [])},
                "user_data": base64.b64decode(user_data).decode() if user_data else None,
            })
    return found


def volumes(endpoint, region):
    """Every EBS volume: its id, size (GiB), type, zone, state, tags and
    attachments (instance, device, state)."""
    ec2 = clients(endpoint, region)
    return [{
        "id": v["VolumeId"],
        "size": v["Size"],
        "type": v.get("VolumeType"),
        "zone": v["AvailabilityZone"],
        "state": v["State"],
        "tags": {t["Key"]: t["Value"] for t in v.get("Tags", [])},
        "attachments": [{"instance": a["InstanceId"], "device": a["Device"], "state": a["State"]}
                        for a in v.get("Attachments", [])],
    } for v in ec2.describe_volumes()["Volumes"]]


def main():
    if sys.argv[1] == "volumes":
        print(json.dumps(volumes(sys.argv[2], sys.argv[3])))
        return
    if sys.argv[1] == "instances":
        print(json.dumps(instances(sys.argv[2], sys.argv[3])))
        return
    if sys.argv[1] == "iam-users":
        print(json.dumps(iam_users(sys.argv[2], sys.argv[3:])))
        return
    if sys.argv[1] == "load-balancers":
        print(json.dumps(load_balancers(sys.argv[2], sys.argv[3])))
        return
    endpoint, region, zone, cidr, ip, cluster = sys.argv[1:7]
    ec2 = clients(endpoint, region)
    tag = {"Key": f"kubernetes.io/cluster/{cluster}", "Value": "owned"}
    vpc = ec2.create_vpc(CidrBlock=cidr.rsplit(".", 2)[0] + ".0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"]["SubnetId"]
    ec2.create_tags(Resources=[subnet], Tags=[tag, {"Key": "kubernetes.io/role/internal-elb", "Value": "1"}])
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="fixture", aws_secret_access_key="fixture")
    profile = iam.create_instance_profile(InstanceProfileName=f"{cluster}-nodes")["InstanceProfile"]["Arn"]
    sg = ec2.create_security_group(GroupName=f"{cluster}-nodes", Description="the cluster's nodes",
                                   VpcId=vpc)["GroupId"]
    ec2.create_tags(Resources=[sg], Tags=[tag])
    instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="m5.large",
                                 SubnetId=subnet, PrivateIpAddress=ip, SecurityGroupIds=[sg],
                                 TagSpecifications=[{"ResourceType": "instance", "Tags": [tag]}],
                                 )["Instances"][0]
    print(json.dumps({
        "vpc": vpc,
        "subnet": subnet,
        "security_group": sg,
        "instance_profile": profile,
        "instance_id": instance["InstanceId"],
        "private_dns": instance["PrivateDnsName"],
        "private_ip": instance["PrivateIpAddress"],
    }))


if __name__ == "__main__":
    main()
