"""Realistic stand-ins for AWS, used by `etcd-stack render` and by the tests alike.

Every value is derived from the resource's type and name, so two runs of the same stack
get the same ids, addresses and ARNs. Addresses land inside the subnet a resource is in;
public addresses come from TEST-NET-3 (203.0.113.0/24), which is never routed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import uuid
from collections.abc import Callable
from typing import Any

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

from etcd_stack.cloud.iam import parameter_arn
from etcd_stack.member import certificates
from etcd_stack.preview.wire import reveal

ACCOUNT_ID = "123456789012"  # the account id AWS's own documentation uses
DEPLOYER_ROLE = "etcd-deployer"  # the role the mocks' `pulumi up` runs as
PUBLIC_RANGE = ipaddress.IPv4Network("203.0.113.0/24")

# Id prefixes AWS uses for each EC2 resource type.
_EC2_PREFIXES = {
    "aws:ec2/vpc:Vpc": "vpc",
    "aws:ec2/subnet:Subnet": "subnet",
    "aws:ec2/internetGateway:InternetGateway": "igw",
    "aws:ec2/natGateway:NatGateway": "nat",
    "aws:ec2/eip:Eip": "eipalloc",
    "aws:ec2/routeTable:RouteTable": "rtb",
    "aws:ec2/route:Route": "r",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "rtbassoc",
    "aws:ec2/securityGroup:SecurityGroup": "sg",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "sg",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": "sgr",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": "sgr",
    "aws:ec2/instance:Instance": "i",
    "aws:ec2/networkInterface:NetworkInterface": "eni",
    "aws:ebs/volume:Volume": "vol",
    "aws:ec2/flowLog:FlowLog": "fl",
    "aws:ec2/keyPair:KeyPair": "key",
}


def digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


# The zones the mocks answer for every region.
ZONE_LETTERS = "abc"

# An account's VPCs that exist before the stack (etcd:vpcId): id -> (CIDR, DNS hostnames on); and their
# subnets: id -> (VPC, CIDR, zone letter). One subnet sits in another VPC, one shares a zone with another.
EXISTING_VPCS = {
    "vpc-0a1b2c3d4e5f60718": ("10.50.0.0/16", True),
    # A default VPC as AWS makes it, and one made by hand without DNS hostnames (EC2's default).
    "vpc-0b2c3d4e5f6071829": ("172.31.0.0/16", True),
    "vpc-0c3d4e5f607182930": ("10.60.0.0/16", False),
}
EXISTING_SUBNETS = {
    "subnet-0a1b2c3d4e5f60718": ("vpc-0a1b2c3d4e5f60718", "10.50.0.0/20", "a"),
    "subnet-0b1c2d3e4f5a60719": ("vpc-0a1b2c3d4e5f60718", "10.50.16.0/20", "b"),
    "subnet-0c1d2e3f4a5b6071a": ("vpc-0a1b2c3d4e5f60718", "10.50.32.0/24", "c"),
    "subnet-0d1e2f3a4b5c6071b": ("vpc-0a1b2c3d4e5f60718", "10.50.48.0/20", "a"),
    "subnet-0e1f2a3b4c5d6071c": ("vpc-0b2c3d4e5f6071829", "172.31.0.0/20", "c"),
}


def _private_key(inputs: dict[str, Any], field: str):
    return load_pem_private_key(reveal(inputs[field]).encode(), None)


def _pick(network: ipaddress.IPv4Network, seed: str) -> str:
    # Skip the five addresses AWS reserves in every subnet (first four and the last).
    usable = network.num_addresses - 5
    return str(network[4 + int(digest(seed), 16) % usable])


class StackMocks(pulumi.runtime.Mocks):
    def __init__(self, region: str, stack: str = ""):
        self.region = region
        # Pulumi's auto-names end in a random suffix, so a second stack never repeats the first's.
        self.stack = stack
        self.not_before = certificates.start_of_year()
        self._subnet_cidrs: dict[str, ipaddress.IPv4Network] = {}
        self._eip_addresses: dict[str, str] = {}
        self._resources: dict[str, Callable[[str, dict[str, Any], str], dict[str, Any]]] = {
            "aws:ec2/subnet:Subnet": self._subnet,
            "aws:ec2/eip:Eip": self._eip,
            "aws:ec2/natGateway:NatGateway": self._nat_gateway,
            "aws:ec2/instance:Instance": self._instance,
            "aws:ec2/vpc:Vpc": self._vpc,
            "aws:ec2/networkInterface:NetworkInterface": self._network_interface,
            "aws:lb/loadBalancer:LoadBalancer": self._load_balancer,
            "aws:lb/targetGroup:TargetGroup": self._target_group,
            "aws:s3/bucket:Bucket": self._bucket,
            "aws:route53/zone:Zone": self._zone,
            "aws:ssm/parameter:Parameter": self._parameter,
            "aws:kms/key:Key": self._kms_key,
            "aws:kms/alias:Alias": self._kms_alias,
            "pulumi-python:dynamic:Resource": self._dynamic,
            "tls:index/privateKey:PrivateKey": self._tls_private_key,
            "tls:index/selfSignedCert:SelfSignedCert": self._tls_self_signed,
            "tls:index/certRequest:CertRequest": self._tls_request,
            "tls:index/locallySignedCert:LocallySignedCert": self._tls_signed,
        }
        self._calls: dict[str, Callable[[dict[str, Any]], Any]] = {
            "aws:index/getAvailabilityZones:getAvailabilityZones": self._availability_zones,
            "aws:ssm/getParameter:getParameter": self._ssm_parameter,
            "aws:ec2/getVpc:getVpc": self._existing_vpc,
            "aws:ec2/getSubnet:getSubnet": self._existing_subnet,
            "aws:index/getCallerIdentity:getCallerIdentity": self._caller_identity,
            "aws:iam/getSessionContext:getSessionContext": self._session_context,
        }

    # --- resources --------------------------------------------------------------------------

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if not args.custom:
            return "", {}
        inputs = dict(args.inputs)
        resource_id, state = self._identity(args.typ, args.name, inputs)
        extra = self._resources.get(args.typ)
        if extra is not None:
            state.update(extra(args.name, inputs, resource_id))
        # Some ids are not derived from the name: a bucket's is its name, a KMS key's a UUID.
        return state.get("id", resource_id), {**inputs, **state}

    def _identity(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Id, ARN and the physical name Pulumi's auto-naming would give."""
        package, module_type = typ.split(":", 1)
        module = module_type.split("/", 1)[0]
        prefix = _EC2_PREFIXES.get(typ)
        physical = inputs.get("name") or f"{name}-{digest(typ, name, self.stack)[:7]}"
        if prefix:
            resource_id = f"{prefix}-{digest(typ, name)[:17]}"
            arn = f"arn:aws:ec2:{self.region}:{ACCOUNT_ID}:{typ.rsplit(':', 1)[1].lower()}/{resource_id}"
        elif module == "iam":
            resource_id = physical
            kind = typ.rsplit(":", 1)[1]
            kind_path = {"Role": "role", "InstanceProfile": "instance-profile", "Policy": "policy"}.get(
                kind, kind.lower())
            # IAM puts the entity's path between its kind and its name (IAM user guide, identifiers).
            arn = f"arn:aws:iam::{ACCOUNT_ID}:{kind_path}{inputs.get('path') or '/'}{physical}"
        elif module == "cloudwatch" and typ.endswith("LogGroup"):
            resource_id = physical
            arn = f"arn:aws:logs:{self.region}:{ACCOUNT_ID}:log-group:{physical}"
        else:
            resource_id = f"{name}-{digest(typ, name)[:12]}"
            arn = f"arn:aws:{module}:{self.region}:{ACCOUNT_ID}:{resource_id}"
        state: dict[str, Any] = {"arn": arn, "id": resource_id}
        if package == "aws" and module in ("iam", "cloudwatch"):
            state["name"] = physical
        if typ == "aws:ec2/keyPair:KeyPair":
            state["keyName"] = inputs.get("keyName") or physical
        return resource_id, state

    def _vpc(self, name: str, inputs: dict[str, Any], resource_id: str) -> dict[str, Any]:
        return {
            "defaultSecurityGroupId": f"sg-{digest('default-sg', name)[:17]}",
            "mainRouteTableId": f"rtb-{digest('main-rtb', name)[:17]}",
            "defaultNetworkAclId": f"acl-{digest('default-acl', name)[:17]}",
            "ownerId": ACCOUNT_ID,
        }

    def _subnet(self, name: str, inputs: dict[str, Any], resource_id: str) -> dict[str, Any]:
        self._subnet_cidrs[resource_id] = ipaddress.IPv4Network(inputs["cidrBlock"])
        return {"availabilityZoneId": self._zone_id(ZONE_LETTERS.index(inputs["availabilityZone"][-1]))}

    def _eip(self, name: str, inputs: dict[str, Any], resource_id: str) -> dict[str, Any]:
        address = _pick(PUBLIC_RANGE, f"eip:{name}")
        self._eip_addresses[resource_id] = address
        return {"publicIp": address, "allocationId": resource_id, "domain": "vpc",
                "publicDns": f"ec2-{address.replace('.', '-')}.{self.region}.compute.amazonaws.com"}

    def _nat_gateway(self, name: str, inputs: dict[str, Any], resource_id: str) -> dict[str, Any]:
        subnet = self._subnet_cidrs[inputs["subnetId"]]
        return {"privateIp": _pick(subnet, f"nat:{name}"), "publicIp": self._eip_addresses[inputs["allocationId"]],
                "connectivityType": "public"}

    def _instance(self, name: str, inputs: dict[str, Any], resource_id: str) -> dict[str, Any]:
        state: dict[str, Any] = {"instanceState": "running"}
        subnet_id = inputs.get("subnetId")
        if subnet_id in self._subnet_cidrs:
            private_ip = _pick(self._subnet_cidrs[subnet_id], f"instance:{name}")
            host = private_ip.replace(".", "-")
            state.update(privateIp=private_ip, privateDns=f"ip-{host}.{self.region}.compute.internal")
        if inputs.get("associatePublicIpAddress"):
            state["publicIp"] = _pick(PUBLIC_RANGE, f"instance:{name}")
        state["primaryNetworkInterfaceId"] = f"eni-{digest('eni', name)[:17]}"
        return state

    def _network_interface(self, name: str, inputs: dict[str, Any], resource_id: str) -> dict[str, Any]:
        addresses = inputs.get("privateIps") or [_pick(self._subnet_cidrs[inputs["subnetId"]], f"eni:{name}")]
        return {"privateIp": addresses[0], "privateIps": addresses, "macAddress": "02:" + ":".join(
            digest("mac", name)[i:i + 2] for i in range(0, 10, 2))}

    def _load_balancer(self, name: str, inputs: dict[str, Any], resource_id: str) -> dict[str, Any]:
        physical = f"{name[:20]}-{digest('lb', name, self.stack)[:8]}"
        scheme = "internal-" if inputs.get("internal") else ""
        suffix = f"net/{physical}/{digest('lb-id', name)[:16]}"
        return {
            "arn": f"arn:aws:elasticloadbalancing:{self.region}:{ACCOUNT_ID}:loadbalancer/{suffix}",
            "arnSuffix": suffix,
            "dnsName": f"{scheme}{physical}-{digest('lb-dns', name)[:16]}.elb.{self.region}.amazonaws.com",
            "zoneId": "Z" + digest("lb-zone", self.region)[:12].upper(),
            "name": physical,
        }

    def _target_group(self, name: str, inputs: dict[str, Any], resource_id: str) -> dict[str, Any]:
        suffix = f"targetgroup/{name[:20]}-{digest('tg', name, self.stack)[:8]}/{digest('tg-id', name)[:16]}"
        return {"arn": f"arn:aws:elasticloadbalancing:{self.region}:{ACCOUNT_ID}:{suffix}", "arnSuffix": suffix}

    def _bucket(self, name: str, inputs: dict[str, Any], resource_id: str) -> dict[str, Any]:
        bucket = inputs.get("bucket") or f"{name}-{digest('bucket', name, self.stack)[:12]}"
        return {"bucket": bucket, "id": bucket, "arn": f"arn:aws:s3:::{bucket}",
                "bucketRegionalDomainName": f"{bucket}.s3.{self.region}.amazonaws.com"}

    def _zone(self, name: str, inputs: dict[str, Any], resource_id: str) -> dict[str, Any]:
        zone_id = "Z" + digest("zone", name)[:20].upper()
        return {"zoneId": zone_id, "arn": f"arn:aws:route53:::hostedzone/{zone_id}",
                "nameServers": [f"ns-{i}.awsdns-00.com" for i in range(4)]}

    def _parameter(self, name: str, inputs: dict[str, Any], resource_id: str) -> dict[str, Any]:
        # The ARN ends with the parameter's full name; a name outside any hierarchy gets a slash before it.
        full = inputs.get("name") or f"{name}-{digest('parameter', name)[:7]}"
        path = full if full.startswith("/") else f"/{full}"
        return {"id": full, "name": full, "arn": parameter_arn(self.region, ACCOUNT_ID, path), "version": 1}

    def _kms_key(self, name: str, inputs: dict[str, Any], resource_id: str) -> dict[str, Any]:
        key_id = str(uuid.UUID(digest("kms-key", name)[:32]))
        return {"id": key_id, "keyId": key_id, "arn": f"arn:aws:kms:{self.region}:{ACCOUNT_ID}:key/{key_id}"}

    def _kms_alias(self, name: str, inputs: dict[str, Any], resource_id: str) -> dict[str, Any]:
        return {"id": inputs["name"], "arn": f"arn:aws:kms:{self.region}:{ACCOUNT_ID}:{inputs['name']}",
                "targetKeyArn": f"arn:aws:kms:{self.region}:{ACCOUNT_ID}:key/{inputs['targetKeyId']}"}

    def _dynamic(self, name: str, inputs: dict[str, Any], resource_id: str) -> dict[str, Any]:
        """Dynamic resources never run under mocks; a discovery token answers as the service would."""
        if "endpoint" in inputs and "size" in inputs:
            return {"url": f"{inputs['endpoint']}/{digest('discovery', name, str(inputs['size']))[:32]}"}
        if "latest" in inputs:  # a pinned image, first deployed
            return {"image": inputs["latest"]}
        return {}

    # --- tls: what pulumi-tls would make, as real PEMs --------------------------------------

    def _tls_private_key(self, name: str, inputs: dict[str, Any], resource_id: str) -> dict[str, Any]:
        key = certificates.private_key(f"mock:{name}")
        return {"privateKeyPem": certificates.key_pem(key), "publicKeyPem": certificates.public_pem(key),
                "algorithm": "ECDSA", "ecdsaCurve": "P256"}

    def _tls_self_signed(self, name: str, inputs: dict[str, Any], resource_id: str) -> dict[str, Any]:
        key = _private_key(inputs, "privateKeyPem")
        cert = certificates.self_signed_ca(
            key, inputs["subject"]["commonName"], self.not_before, inputs["validityPeriodHours"],
            inputs["allowedUses"],
        )
        return {"certPem": certificates.cert_pem(cert), **self._validity(cert)}

    def _tls_request(self, name: str, inputs: dict[str, Any], resource_id: str) -> dict[str, Any]:
        key = _private_key(inputs, "privateKeyPem")
        request = certificates.signing_request(
            key, inputs["subject"]["commonName"], inputs.get("dnsNames", []), inputs.get("ipAddresses", [])
        )
        return {"certRequestPem": request.public_bytes(Encoding.PEM).decode()}

    def _tls_signed(self, name: str, inputs: dict[str, Any], resource_id: str) -> dict[str, Any]:
        ca_key = _private_key(inputs, "caPrivateKeyPem")
        ca_cert = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
        request = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
        cert = certificates.sign(
            request, ca_key, ca_cert, inputs["allowedUses"], self.not_before, inputs["validityPeriodHours"]
        )
        return {"certPem": certificates.cert_pem(cert), **self._validity(cert)}

    @staticmethod
    def _validity(cert: x509.Certificate) -> dict[str, Any]:
        return {"validityStartTime": cert.not_valid_before_utc.isoformat(),
                "validityEndTime": cert.not_valid_after_utc.isoformat(), "readyForRenewal": False}

    def _zone_id(self, index: int) -> str:
        area, direction, number = self.region.split("-")[-3:]
        return f"{area}{direction[0]}{number}-az{index + 1}"

    # --- provider functions -----------------------------------------------------------------

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any] | tuple[dict[str, Any], list]:
        handler = self._calls.get(args.token)
        if handler is None:
            raise NotImplementedError(f"the offline mocks do not answer {args.token}")
        return handler(dict(args.args))

    def _availability_zones(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.region,
            "names": [f"{self.region}{letter}" for letter in ZONE_LETTERS],
            "zoneIds": [self._zone_id(i) for i in range(len(ZONE_LETTERS))],
            "groupNames": [self.region] * len(ZONE_LETTERS),
            "state": "available",
        }

    # A failed lookup answers as the provider does: the invoke fails with AWS's error, which the program sees.
    def _existing_vpc(self, args: dict[str, Any]) -> dict[str, Any] | tuple[dict[str, Any], list]:
        vpc_id = args["id"]
        if vpc_id not in EXISTING_VPCS:
            return {}, [("id", f"InvalidVpcID.NotFound: The vpc ID '{vpc_id}' does not exist")]
        cidr, hostnames = EXISTING_VPCS[vpc_id]
        return {"id": vpc_id, "cidrBlock": cidr, "state": "available", "default": cidr == "172.31.0.0/16",
                "enableDnsSupport": True, "enableDnsHostnames": hostnames, "ownerId": ACCOUNT_ID,
                "arn": f"arn:aws:ec2:{self.region}:{ACCOUNT_ID}:vpc/{vpc_id}"}

    def _existing_subnet(self, args: dict[str, Any]) -> dict[str, Any] | tuple[dict[str, Any], list]:
        subnet_id = args["id"]
        if subnet_id not in EXISTING_SUBNETS:
            return {}, [("id", f"InvalidSubnetID.NotFound: The subnet ID '{subnet_id}' does not exist")]
        vpc_id, cidr, letter = EXISTING_SUBNETS[subnet_id]
        network = ipaddress.IPv4Network(cidr)
        return {"id": subnet_id, "vpcId": vpc_id, "cidrBlock": cidr, "availabilityZone": f"{self.region}{letter}",
                "availabilityZoneId": self._zone_id(ZONE_LETTERS.index(letter)), "state": "available",
                "availableIpAddressCount": network.num_addresses - 5, "mapPublicIpOnLaunch": False,
                "defaultForAz": False, "ownerId": ACCOUNT_ID,
                "arn": f"arn:aws:ec2:{self.region}:{ACCOUNT_ID}:subnet/{subnet_id}"}
    def _caller_identity(self, args: dict[str, Any]) -> dict[str, Any]:
        # Whoever runs `pulumi up` usually holds an assumed role; STS names the session, not the role.
        return {"id": ACCOUNT_ID, "accountId": ACCOUNT_ID, "userId": f"AROA{digest('deployer')[:17].upper()}:pulumi",
                "arn": f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{DEPLOYER_ROLE}/pulumi"}

    def _session_context(self, args: dict[str, Any]) -> dict[str, Any]:
        arn = args["arn"]
        if ":assumed-role/" not in arn:
            # A user (or the root user) is its own issuer.
            return {"id": arn, "arn": arn, "issuerArn": arn}
        role, _, session = arn.split(":assumed-role/", 1)[1].partition("/")
        return {"id": arn, "arn": arn, "issuerArn": f"arn:aws:iam::{ACCOUNT_ID}:role/{role}",
                "issuerId": f"AROA{digest('deployer')[:17].upper()}", "issuerName": role, "sessionName": session}

    def _ssm_parameter(self, args: dict[str, Any]) -> dict[str, Any]:
        name = args["name"]
        value = f"ami-{digest('ssm', self.region, name)[:17]}"
        return {
            "id": name, "name": name, "value": value, "insecureValue": value, "type": "String", "version": 1,
            "arn": f"arn:aws:ssm:{self.region}::parameter{name}",
        }
