#!/usr/bin/env python3
"""Makes, in an AWS API (moto's server in the tests), what an admin has
before installing a cluster on AWS: a VPC, a subnet for the nodes tagged for
the cluster and for internal load balancers, a security group, and the
instance of the first node at a given private address. Prints what it made
as JSON.

usage: aws_fixture.py ENDPOINT REGION ZONE CIDR IP CLUSTER
"""

import json
import sys

import boto3


def clients(endpoint, region):
    kw = dict(endpoint_url=endpoint, region_name=region,
              aws_access_key_id="fixture", aws_secret_access_key="fixture")
    return boto3.client("ec2", **kw)


def main():
    endpoint, region, zone, cidr, ip, cluster = sys.argv[1:7]
    ec2 = clients(endpoint, region)
    tag = {"Key": f"kubernetes.io/cluster/{cluster}", "Value": "owned"}
    vpc = ec2.create_vpc(CidrBlock=cidr.rsplit(".", 2)[0] + ".0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"]["SubnetId"]
    ec2.create_tags(Resources=[subnet], Tags=[tag, {"Key": "kubernetes.io/role/internal-elb", "Value": "1"}])
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
        "instance_id": instance["InstanceId"],
        "private_dns": instance["PrivateDnsName"],
        "private_ip": instance["PrivateIpAddress"],
    }))


if __name__ == "__main__":
    main()
