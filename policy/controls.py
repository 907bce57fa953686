"""The security controls the stack promises, as plain functions over resources (no policy engine needed).

Each control is named after the control it enforces: AWS Foundational Security Best Practices
(EC2.x, S3.x, SSM.1) and the CIS benchmark's etcd section (2.1 to 2.7) applied to each member's
rendered configuration. A check returns one message per violation, naming the resource.
Values that are not known yet (a preview before the cloud has answered) are not judged.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import gzip
import ipaddress
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from cryptography import x509

# What the SSM Agent needs for Session Manager and Run Command (Systems Manager user guide, "Reference:
# ec2messages, ssmmessages, and other API operations"); no parameter read among them.
SSM_AGENT_ACTIONS = frozenset({
    "ssm:UpdateInstanceInformation",
    *(f"ssmmessages:{verb}{kind}Channel" for verb in ("Create", "Open") for kind in ("Control", "Data")),
    *(f"ec2messages:{verb}" for verb in ("AcknowledgeMessage", "DeleteMessage", "FailMessage", "GetEndpoint",
                                         "GetMessages", "SendReply")),
})
# Every SSM action that returns a parameter's value.
PARAMETER_READS = ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory")
# AWS managed policies that allow those reads on every parameter (their documented JSON, aws-managed-policy
# reference): attaching one hands every parameter of the account to the role.
PARAMETER_READING_MANAGED_POLICIES = frozenset(f"arn:aws:iam::aws:policy/{name}" for name in (
    "AmazonSSMManagedInstanceCore", "service-role/AmazonEC2RoleforSSM", "AmazonSSMReadOnlyAccess",
    "AmazonSSMFullAccess", "service-role/AmazonSSMAutomationRole", "ReadOnlyAccess", "PowerUserAccess",
    "AdministratorAccess",
))
WORLD = ("0.0.0.0/0", "::/0")
ROLE_TAG = "etcd-role"
CLUSTER_TAG = "etcd-cluster"
MEMBER_CONFIGS = ("/etc/etcd/etcd.yaml", "/etc/etcd/etcd-join.yaml")

VPC = "aws:ec2/vpc:Vpc"
INSTANCE = "aws:ec2/instance:Instance"
BUCKET = "aws:s3/bucket:Bucket"


@dataclass(frozen=True)
class Resource:
    type: str
    name: str
    props: Mapping[str, Any]
    # Property -> the (type, name) of each resource its value comes from.
    property_dependencies: Mapping[str, Sequence[tuple[str, str]]] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.type, self.name)

    def label(self) -> str:
        return f"{self.type} {self.name}"

    def refers_to(self, prop: str, other: Resource) -> bool:
        return other.key in self.property_dependencies.get(prop, ())


@dataclass(frozen=True)
class Control:
    name: str
    description: str
    check: Callable[..., list[str]]
    # "resource": check(resource) for each resource; "stack": check(resources) once.
    scope: str = "resource"


def _of(resources: Sequence[Resource], typ: str) -> list[Resource]:
    return [r for r in resources if r.type == typ]


# --- AWS Foundational Security Best Practices ------------------------------------------------------

def default_security_group_has_no_rules(r: Resource) -> list[str]:
    if r.type != "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup":
        return []
    rules = [kind for kind in ("ingress", "egress") if r.props.get(kind)]
    return [f"{r.label()}: the default security group keeps {' and '.join(rules)} rules"] if rules else []


def vpc_flow_logs(resources: Sequence[Resource]) -> list[str]:
    logged = _of(resources, "aws:ec2/flowLog:FlowLog")
    return [f"{vpc.label()}: no flow log records its traffic" for vpc in _of(resources, VPC)
            if not any(log.refers_to("vpcId", vpc) for log in logged)]


def ebs_encrypted(r: Resource) -> list[str]:
    if r.type == "aws:ebs/volume:Volume" and r.props.get("encrypted") is not True:
        return [f"{r.label()}: the EBS volume is not encrypted"]
    if r.type == INSTANCE:
        devices = [r.props.get("rootBlockDevice") or {}, *(r.props.get("ebsBlockDevices") or [])]
        if any(device.get("encrypted") is not True for device in devices):
            return [f"{r.label()}: a block device of the instance is not encrypted"]
    return []


def imdsv2_required(r: Resource) -> list[str]:
    if r.type == INSTANCE and (r.props.get("metadataOptions") or {}).get("httpTokens") != "required":
        return [f"{r.label()}: the instance metadata service does not require IMDSv2 tokens"]
    return []


def no_public_ipv4_but_the_bastion(r: Resource) -> list[str]:
    public = r.type == INSTANCE and r.props.get("associatePublicIpAddress")
    if public and (r.props.get("tags") or {}).get(ROLE_TAG) != "bastion":
        return [f"{r.label()}: only the bastion may have a public IPv4 address"]
    return []


def no_ingress_from_the_world(r: Resource) -> list[str]:
    sources: list[str] = []
    if r.type == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        sources = [r.props.get("cidrIpv4"), r.props.get("cidrIpv6")]
    elif r.type == "aws:ec2/securityGroupRule:SecurityGroupRule" and r.props.get("type") == "ingress":
        sources = [*(r.props.get("cidrBlocks") or []), *(r.props.get("ipv6CidrBlocks") or [])]
    elif r.type == "aws:ec2/securityGroup:SecurityGroup":
        for rule in r.props.get("ingress") or []:
            sources += [*(rule.get("cidrBlocks") or []), *(rule.get("ipv6CidrBlocks") or [])]
    open_to = sorted({s for s in sources if s in WORLD})
    return [f"{r.label()}: ingress open to {', '.join(open_to)}"] if open_to else []


def subnets_assign_no_public_ip(r: Resource) -> list[str]:
    if r.type == "aws:ec2/subnet:Subnet" and r.props.get("mapPublicIpOnLaunch"):
        return [f"{r.label()}: the subnet gives instances public IPv4 addresses by default"]
    return []


def _document(text: Any) -> dict[str, Any] | None:
    """A policy document from its JSON text, or None while it is unknown or not JSON."""
    if isinstance(text, dict):
        return text
    if not isinstance(text, str):
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements = document.get("Statement") or []
    return [statements] if isinstance(statements, dict) else [s for s in statements if isinstance(s, dict)]


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [v for v in value or [] if isinstance(v, str)]


def _allowed_actions(document: dict[str, Any]) -> list[tuple[list[str], list[str]]]:
    """(action patterns, resource patterns) of each Allow statement."""
    return [(_listed(s.get("Action")), _listed(s.get("Resource")))
            for s in _statements(document) if s.get("Effect") == "Allow"]


def _grants(patterns: list[str], action: str) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern in patterns)


def _role_documents(resources: Sequence[Resource], role: Resource) -> list[dict[str, Any] | None]:
    """Every inline policy document of a role: RolePolicy resources and the role's own inlinePolicies."""
    inline = [p.props.get("policy") for p in _of(resources, "aws:iam/rolePolicy:RolePolicy")
              if p.refers_to("role", role)]
    inline += [p.get("policy") for p in role.props.get("inlinePolicies") or [] if isinstance(p, dict)]
    return [_document(text) for text in inline]


def instances_managed_by_ssm(resources: Sequence[Resource]) -> list[str]:
    profiles = _of(resources, "aws:iam/instanceProfile:InstanceProfile")
    roles = _of(resources, "aws:iam/role:Role")

    def reachable(role: Resource) -> bool:
        documents = _role_documents(resources, role)
        if any(document is None for document in documents):
            return True  # a policy not known yet is not judged
        granted = [actions for document in documents for actions, _ in _allowed_actions(document)]
        return all(any(_grants(actions, needed) for actions in granted) for needed in SSM_AGENT_ACTIONS)

    found = []
    for instance in _of(resources, INSTANCE):
        managed = any(
            instance.refers_to("iamInstanceProfile", profile) and profile.refers_to("role", role) and reachable(role)
            for profile in profiles for role in roles
        )
        if not managed:
            found.append(f"{instance.label()}: its instance role does not allow what the SSM Agent needs "
                         f"({', '.join(sorted(SSM_AGENT_ACTIONS))}), so SSM cannot manage it")
    return found


def _reads_every_parameter(actions: list[str], resources: list[str]) -> bool:
    """An allow of a parameter read on a resource pattern that matches any parameter of any account."""
    if not any(_grants(actions, read) for read in PARAMETER_READS):
        return False
    for pattern in resources:
        if pattern == "*":
            return True
        parts = pattern.split(":", 5)
        if len(parts) == 6 and fnmatch.fnmatchcase("ssm", parts[2]) and fnmatch.fnmatchcase(
                "parameter/someone-else/secret", parts[5]):
            return True
    return False


def no_parameter_reads_on_everything(r: Resource) -> list[str]:
    found = []
    attached = {r.props.get("policyArn"), *_listed(r.props.get("managedPolicyArns"))}
    for arn in sorted(a for a in attached if a in PARAMETER_READING_MANAGED_POLICIES):
        found.append(f"{r.label()}: attaches {arn}, which allows reading every SSM parameter")
    texts = []
    if r.type in ("aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy"):
        texts.append(r.props.get("policy"))
    if r.type == "aws:iam/role:Role":
        texts += [p.get("policy") for p in r.props.get("inlinePolicies") or [] if isinstance(p, dict)]
    for document in filter(None, map(_document, texts)):
        if any(_reads_every_parameter(actions, patterns) for actions, patterns in _allowed_actions(document)):
            found.append(f"{r.label()}: allows reading SSM parameters on every parameter")
    return found


def secrets_under_the_stack_key(resources: Sequence[Resource]) -> list[str]:
    keys = [*_of(resources, "aws:kms/key:Key"), *_of(resources, "aws:kms/alias:Alias")]
    found = []
    for parameter in _of(resources, "aws:ssm/parameter:Parameter"):
        kind, value = parameter.props.get("type"), parameter.props.get("value")
        if kind == "SecureString" and not any(parameter.refers_to("keyId", key) for key in keys):
            found.append(f"{parameter.label()}: a SecureString not encrypted with a KMS key of the stack "
                         "(the account's aws/ssm key lets every principal of the account decrypt)")
        elif kind != "SecureString" and isinstance(value, str) and "-----BEGIN " in value:
            found.append(f"{parameter.label()}: PEM material in a plain {kind}; keys, certificates and CA bundles "
                         "are SecureStrings under the stack's key")
    return found


def _bucket_settings(resources: Sequence[Resource], typ: str) -> dict[tuple[str, str], list[Resource]]:
    return {bucket.key: [s for s in _of(resources, typ) if s.refers_to("bucket", bucket)]
            for bucket in _of(resources, BUCKET)}


def buckets_block_public_access(resources: Sequence[Resource]) -> list[str]:
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    found = []
    for bucket in _of(resources, BUCKET):
        blocks = _bucket_settings(resources, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")[bucket.key]
        if not any(all(block.props.get(flag) is True for flag in flags) for block in blocks):
            found.append(f"{bucket.label()}: public access is not blocked on all four settings")
    return found


def _denies_plain_http(document: Any) -> bool:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return False
    statements = (document or {}).get("Statement", [])
    return any(s.get("Effect") == "Deny"
               and (s.get("Condition") or {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)
               for s in statements)


def buckets_refuse_plain_http(resources: Sequence[Resource]) -> list[str]:
    policies = _bucket_settings(resources, "aws:s3/bucketPolicy:BucketPolicy")
    return [f"{bucket.label()}: no bucket policy denies requests without TLS"
            for bucket in _of(resources, BUCKET) if not any(_denies_plain_http(p.props.get("policy"))
                                                            for p in policies[bucket.key])]


def buckets_versioned(resources: Sequence[Resource]) -> list[str]:
    settings = _bucket_settings(resources, "aws:s3/bucketVersioning:BucketVersioning")
    return [f"{bucket.label()}: versioning is not enabled" for bucket in _of(resources, BUCKET)
            if not any((v.props.get("versioningConfiguration") or {}).get("status") == "Enabled"
                       for v in settings[bucket.key])]


def buckets_encrypted(resources: Sequence[Resource]) -> list[str]:
    """Every bucket encrypts by default under a KMS key of the stack: SSE-S3, or the account's aws/s3 key, would
    let any principal of the account with s3:GetObject read the objects."""
    typ = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    settings = _bucket_settings(resources, typ)
    keys = _of(resources, "aws:kms/key:Key")
    found = []
    for bucket in _of(resources, BUCKET):
        defaults = [(s, rule.get("applyServerSideEncryptionByDefault") or {})
                    for s in settings[bucket.key] for rule in s.props.get("rules") or []]
        if not any(default.get("sseAlgorithm") for _, default in defaults):
            found.append(f"{bucket.label()}: no default server-side encryption")
        elif not any(default.get("sseAlgorithm") in ("aws:kms", "aws:kms:dsse") and default.get("kmsMasterKeyId")
                     and any(s.refers_to("rules", key) for key in keys) for s, default in defaults):
            found.append(f"{bucket.label()}: encrypted by default, but not under a KMS key of the stack")
    return found


def load_balancer_internal(r: Resource) -> list[str]:
    if r.type == "aws:lb/loadBalancer:LoadBalancer" and r.props.get("internal") is not True:
        return [f"{r.label()}: the load balancer faces the internet"]
    return []


# --- CIS etcd, on each member's rendered configuration ----------------------------------------------

def member_files(r: Resource) -> dict[str, str] | None:
    """The files a member's user_data writes, or None when this is no member or its user_data is unknown."""
    if r.type != INSTANCE or (r.props.get("tags") or {}).get(ROLE_TAG) != "member":
        return None
    text = r.props.get("userData")
    encoded = r.props.get("userDataBase64")
    if not text and isinstance(encoded, str):
        try:
            raw = base64.b64decode(encoded, validate=True)
            text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()
        except (binascii.Error, OSError, UnicodeDecodeError):
            return {}
    if not isinstance(text, str):
        return None
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return {}
    return {f.get("path"): f.get("content", "") for f in document.get("write_files") or []}


Judge = Callable[[Resource, dict[str, Any], dict[str, str]], list[str]]


def _member_check(judge: Judge) -> Callable[[Resource], list[str]]:
    """Runs `judge(member, config, files)` on every etcd configuration file a member writes."""

    def check(r: Resource) -> list[str]:
        files = member_files(r)
        if files is None:
            return []
        configs = {path: files[path] for path in MEMBER_CONFIGS if path in files}
        if not configs:
            return [f"{r.label()}: the member's user_data writes no etcd configuration"]
        found = []
        for path, text in configs.items():
            config = yaml.safe_load(text) or {}
            found += [f"{r.label()}: {path}: {problem}" for problem in judge(r, config, files)]
        return found

    return check


def _block(config: dict[str, Any], block: str) -> dict[str, Any]:
    return config.get(block) or {}


def _cert_and_key(block: str) -> Judge:
    def judge(r: Resource, config: dict[str, Any], files: dict[str, str]) -> list[str]:
        settings = _block(config, block)
        return [f"{block} sets no {key}" for key in ("cert-file", "key-file") if not settings.get(key)]

    return judge


def _client_cert_auth(block: str) -> Judge:
    def judge(r: Resource, config: dict[str, Any], files: dict[str, str]) -> list[str]:
        return [] if _block(config, block).get("client-cert-auth") is True else [f"{block} client-cert-auth is off"]

    return judge


def _no_auto_tls(block: str) -> Judge:
    def judge(r: Resource, config: dict[str, Any], files: dict[str, str]) -> list[str]:
        return [f"{block} auto-tls is on"] if _block(config, block).get("auto-tls") is True else []

    return judge


def _cluster_own_ca(r: Resource, config: dict[str, Any], files: dict[str, str]) -> list[str]:
    """Both transports trust a CA file the member's own user_data writes, holding only this cluster's CAs."""
    cluster = (r.props.get("tags") or {}).get(CLUSTER_TAG, "")
    found = []
    for block in ("client-transport-security", "peer-transport-security"):
        ca_file = _block(config, block).get("trusted-ca-file")
        if not ca_file:
            found.append(f"{block} trusts no CA file of its own")
            continue
        if ca_file not in files:
            found.append(f"{block} trusts {ca_file}, which is not the cluster's CA the user_data writes")
            continue
        try:
            certs = x509.load_pem_x509_certificates(files[ca_file].encode())
        except ValueError:
            found.append(f"{block} trusts {ca_file}, which holds no certificates")
            continue
        for cert in certs:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
            own = bool(names) and str(names[0].value).startswith(f"{cluster} etcd CA")
            if not constraints.ca or cert.issuer != cert.subject or not own:
                found.append(f"{block} trusts {ca_file}, which holds {cert.subject.rfc4514_string()}, "
                             f"not a CA of cluster {cluster!r}")
    return found


# --- least privilege: SSH ranges, the metadata service, the peer pin ------------------------------

SSH_PORT = 22
# The widest SSH source allowed per IP version (etcd_stack/config.py refuses wider ones before this runs).
SSH_MIN_PREFIX = {4: 16, 6: 48}


def _ingress_rules(r: Resource) -> list[tuple[str, Any, Any, list[str]]]:
    """Each ingress rule a resource holds, as (protocol, from port, to port, source CIDRs)."""
    if r.type == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        return [(str(r.props.get("ipProtocol")), r.props.get("fromPort"), r.props.get("toPort"),
                 [c for c in (r.props.get("cidrIpv4"), r.props.get("cidrIpv6")) if c])]
    rules = []
    if r.type == "aws:ec2/securityGroupRule:SecurityGroupRule" and r.props.get("type") == "ingress":
        rules = [r.props]
    elif r.type == "aws:ec2/securityGroup:SecurityGroup":
        rules = r.props.get("ingress") or []
    return [(str(rule.get("protocol")), rule.get("fromPort"), rule.get("toPort"),
             [*(rule.get("cidrBlocks") or []), *(rule.get("ipv6CidrBlocks") or [])]) for rule in rules]


def _admits_port(protocol: str, low: Any, high: Any, port: int) -> bool:
    if protocol in ("-1", "all"):
        return True
    # The engine hands numbers over as floats.
    if protocol not in ("tcp", "6") or not isinstance(low, int | float) or not isinstance(high, int | float):
        return False
    return low <= port <= high or (low, high) == (-1, -1)


def ssh_only_from_narrow_ranges(r: Resource) -> list[str]:
    wide = []
    for protocol, low, high, cidrs in _ingress_rules(r):
        if not _admits_port(protocol, low, high, SSH_PORT):
            continue
        for cidr in cidrs:
            try:
                network = ipaddress.ip_network(cidr, strict=False)
            except (TypeError, ValueError):
                continue
            if network.prefixlen < SSH_MIN_PREFIX[network.version]:
                wide.append(str(network))
    if not wide:
        return []
    return [f"{r.label()}: SSH admitted from {', '.join(sorted(wide))}, wider than IPv4 /16 or IPv6 /48"]


def imds_hop_limit_one(r: Resource) -> list[str]:
    """A hop limit above 1 lets a container or a forwarding process on the instance fetch the role's credentials;
    left unset, the image decides (Amazon Linux 2023 images ask for 2)."""
    if r.type != INSTANCE:
        return []
    limit = (r.props.get("metadataOptions") or {}).get("httpPutResponseHopLimit")
    if limit != 1:
        return [f"{r.label()}: the metadata service's response hop limit is {limit}, not 1"]
    return []


_BOOTSTRAP = "/usr/local/sbin/etcd-bootstrap"
_ETCD_VERSION = re.compile(r"^readonly ETCD_VERSION='?(\d+)\.(\d+)\.(\d+)'?$", re.MULTILINE)
# From 3.5.15 the config file reads the peer pin from the transport block; before, etcd ignores those keys
# silently and reads the Go field PeerTLSInfo instead.
PEER_PIN_KEY_SINCE = (3, 5, 15)


def _peers_pinned(r: Resource, config: dict[str, Any], files: dict[str, str]) -> list[str]:
    block = _block(config, "peer-transport-security")
    in_block = any(block.get(key) for key in ("allowed-cn", "allowed-hostname"))
    legacy = config.get("PeerTLSInfo") or {}
    in_field = any(legacy.get(key) for key in ("AllowedCN", "AllowedHostname"))
    found = _ETCD_VERSION.search(files.get(_BOOTSTRAP, ""))
    version = tuple(int(part) for part in found.groups()) if found else None
    # Without a known version, either form counts.
    read = {in_block, in_field} if version is None else {in_block if version >= PEER_PIN_KEY_SINCE else in_field}
    if True in read:
        return []
    where = "" if version is None else f" that etcd {'.'.join(map(str, version))} reads"
    return [f"peer-transport-security admits any certificate of the CA: no allowed-cn or allowed-hostname{where}"]


CONTROLS: tuple[Control, ...] = (
    Control("ec2-2-default-security-group-has-no-rules",
            "EC2.2: the VPC's default security group allows no traffic", default_security_group_has_no_rules),
    Control("ec2-6-vpc-flow-logs-enabled", "EC2.6: every VPC records flow logs", vpc_flow_logs, "stack"),
    Control("ec2-3-ec2-7-ebs-encrypted", "EC2.3/EC2.7: every EBS volume and instance disk is encrypted",
            ebs_encrypted),
    Control("ec2-8-imdsv2-required", "EC2.8: instances require IMDSv2", imdsv2_required),
    Control("ec2-9-no-public-ipv4-but-the-bastion", "EC2.9: no instance but the bastion has a public IPv4 address",
            no_public_ipv4_but_the_bastion),
    Control("ec2-13-14-18-19-no-ingress-from-the-world",
            "EC2.13/14/18/19: no security group admits 0.0.0.0/0 or ::/0", no_ingress_from_the_world),
    Control("ec2-15-subnets-assign-no-public-ip", "EC2.15: subnets do not assign public IPv4 addresses",
            subnets_assign_no_public_ip),
    Control("ssm-1-instances-managed-by-ssm", "SSM.1: every instance can be managed by Systems Manager",
            instances_managed_by_ssm, "stack"),
    Control("iam-no-parameter-reads-on-everything",
            "No role may read every SSM parameter, by its own policy or an attached managed one",
            no_parameter_reads_on_everything),
    Control("ssm-securestrings-under-the-stack-key",
            "Keys, certificates and CA bundles are SecureStrings under a KMS key of the stack",
            secrets_under_the_stack_key, "stack"),
    Control("s3-1-s3-8-bucket-blocks-public-access", "S3.1/S3.8: buckets block all public access",
            buckets_block_public_access, "stack"),
    Control("s3-5-bucket-refuses-plain-http", "S3.5: buckets refuse requests without TLS",
            buckets_refuse_plain_http, "stack"),
    Control("s3-14-bucket-versioned", "S3.14: buckets keep versions", buckets_versioned, "stack"),
    Control("s3-bucket-encrypted", "S3: buckets encrypt objects by default under a KMS key of the stack",
            buckets_encrypted, "stack"),
    Control("elb-load-balancer-internal", "The etcd load balancer is internal", load_balancer_internal),
    Control("cis-etcd-2-1-client-cert-and-key", "CIS etcd 2.1: clients are served with a certificate and key",
            _member_check(_cert_and_key("client-transport-security"))),
    Control("cis-etcd-2-2-client-cert-auth", "CIS etcd 2.2: clients must present a certificate",
            _member_check(_client_cert_auth("client-transport-security"))),
    Control("cis-etcd-2-3-no-client-auto-tls", "CIS etcd 2.3: no self-signed certificates for clients",
            _member_check(_no_auto_tls("client-transport-security"))),
    Control("cis-etcd-2-4-peer-cert-and-key", "CIS etcd 2.4: peers talk with a certificate and key",
            _member_check(_cert_and_key("peer-transport-security"))),
    Control("cis-etcd-2-5-peer-client-cert-auth", "CIS etcd 2.5: peers must present a certificate",
            _member_check(_client_cert_auth("peer-transport-security"))),
    Control("cis-etcd-2-6-no-peer-auto-tls", "CIS etcd 2.6: no self-signed certificates between peers",
            _member_check(_no_auto_tls("peer-transport-security"))),
    Control("cis-etcd-2-7-cluster-own-ca", "CIS etcd 2.7: etcd trusts a CA of its own",
            _member_check(_cluster_own_ca)),
    Control("ssh-only-from-narrow-ranges", "SSH is admitted only from IPv4 /16 or IPv6 /48 ranges or narrower",
            ssh_only_from_narrow_ranges),
    Control("imds-hop-limit-one", "Instance metadata answers only the instance itself (hop limit 1)",
            imds_hop_limit_one),
    Control("etcd-peers-pinned", "The peer port admits only the members' certificates, not any of the CA's",
            _member_check(_peers_pinned)),
)


def violations(resources: Sequence[Resource], controls: Sequence[Control] = CONTROLS) -> dict[str, list[str]]:
    """Every control's findings over a whole stack: the pack's verdict without the engine."""
    found: dict[str, list[str]] = {}
    for control in controls:
        if control.scope == "stack":
            found[control.name] = control.check(resources)
        else:
            found[control.name] = [message for r in resources for message in control.check(r)]
    return found
