"""The policy pack: every control passes on the stack as built, and fires, naming the resource, on a
stack that breaks it."""

from __future__ import annotations

import base64
import copy
import gzip
import json
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import yaml

from etcd_stack.preview import offline
from etcd_stack.preview.wire import reveal
from policy import pack
from policy.controls import CONTROLS, Resource, violations
from tests.conftest import encode, openssh_public


@pytest.fixture(scope="module")
def stack() -> list[Resource]:
    """The whole stack with the bastion on, as the engine shows it to a policy after `pulumi up`."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    raw = {"aws:region": "eu-west-2", "etcd:sshAllowedCidrs": encode(["198.51.100.7/32"]),
           "etcd:sshPublicKey": openssh_public(ed25519.Ed25519PrivateKey.generate())}
    run = offline.run(raw, "test")
    return [Resource(r.type, r.name, reveal({**r.inputs, **r.state}), r.property_dependencies) for r in run.resources]


def test_every_control_passes_on_the_stack_as_built(stack):
    assert {name: found for name, found in violations(stack).items() if found} == {}


def test_the_controls_cover_the_promised_checks():
    names = {c.name for c in CONTROLS}
    for promised in ("ec2-2", "ec2-6", "ec2-3", "ec2-8", "ec2-9", "ec2-13", "ec2-15", "ssm-1", "s3-1", "s3-5",
                     "s3-14", "s3-bucket-encrypted", "elb-load-balancer-internal", "cis-etcd-2-1", "cis-etcd-2-2",
                     "cis-etcd-2-3", "cis-etcd-2-4", "cis-etcd-2-5", "cis-etcd-2-6", "cis-etcd-2-7"):
        assert any(name.startswith(promised) or f"-{promised}" in name for name in names), promised


# --- a violating stack per control ---------------------------------------------------------------

def changed(stack: list[Resource], typ: str, name: str | None, change: Callable[[dict], None]) -> list[Resource]:
    result = []
    for r in stack:
        if r.type == typ and (name is None or r.name == name):
            props = copy.deepcopy(dict(r.props))
            change(props)
            r = Resource(r.type, r.name, props, r.property_dependencies)
        result.append(r)
    return result


def without(stack: list[Resource], typ: str) -> list[Resource]:
    return [r for r in stack if r.type != typ]


def edit_member_config(key_path: tuple[str, ...], value) -> Callable[[dict], None]:
    """Rewrites one key of member etcd-0's etcd.yaml inside its compressed user_data."""

    def change(props: dict) -> None:
        document = yaml.safe_load(gzip.decompress(base64.b64decode(props["userDataBase64"])))
        for file in document["write_files"]:
            if file["path"] == "/etc/etcd/etcd.yaml":
                config = yaml.safe_load(file["content"])
                target = config
                for key in key_path[:-1]:
                    target = target[key]
                target[key_path[-1]] = value
                file["content"] = yaml.safe_dump(config)
            if file["path"] == "/etc/etcd/pki/ca.crt" and key_path == ("ca",):
                file["content"] = value
        props["userDataBase64"] = base64.b64encode(gzip.compress(yaml.safe_dump(document).encode())).decode()

    return change


def a_certificate_not_a_ca() -> str:
    from etcd_stack.member import certificates

    key = certificates.private_key("not-a-ca")
    ca = certificates.self_signed_ca(key, "someone else's CA", certificates.start_of_year())
    leaf = certificates.issue(certificates.operator_profile("x"), certificates.private_key("leaf"), key, ca,
                              certificates.start_of_year())
    return certificates.cert_pem(leaf)


CORE = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
ROLE = "aws:iam/role:Role"


def attachment(name: str, role: str, policy_arn: str) -> Resource:
    """A managed policy attached to one of the stack's roles, as the engine would show it."""
    return Resource("aws:iam/rolePolicyAttachment:RolePolicyAttachment", name,
                    {"role": role, "policyArn": policy_arn}, {"role": [(ROLE, role)]})


def without_key(r: Resource) -> Resource:
    """The parameter as a SecureString under the account's default aws/ssm key."""
    props = {k: v for k, v in r.props.items() if k != "keyId"}
    return Resource(r.type, r.name, props, {k: v for k, v in r.property_dependencies.items() if k != "keyId"})


INSTANCE = "aws:ec2/instance:Instance"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
MEMBER = "etcd-etcd-0"
VIOLATIONS = {
    "ec2-2-default-security-group-has-no-rules": (
        lambda s: changed(s, "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", None,
                          lambda p: p.update(ingress=[{"protocol": "-1", "self": True}])),
        "etcd-default-sg"),
    "ec2-6-vpc-flow-logs-enabled": (lambda s: without(s, "aws:ec2/flowLog:FlowLog"), "etcd-vpc"),
    "ec2-3-ec2-7-ebs-encrypted": (
        lambda s: changed(s, "aws:ebs/volume:Volume", "etcd-etcd-1-data", lambda p: p.update(encrypted=False)),
        "etcd-etcd-1-data"),
    "ec2-8-imdsv2-required": (
        lambda s: changed(s, INSTANCE, "etcd-bastion", lambda p: p["metadataOptions"].update(httpTokens="optional")),
        "etcd-bastion"),
    "ec2-9-no-public-ipv4-but-the-bastion": (
        lambda s: changed(s, INSTANCE, MEMBER, lambda p: p.update(associatePublicIpAddress=True)), MEMBER),
    # On the client port: world-wide SSH also trips the SSH control.
    "ec2-13-14-18-19-no-ingress-from-the-world": (
        lambda s: changed(s, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "etcd-access-members-client",
                          lambda p: p.update(cidrIpv4="0.0.0.0/0")),
        "etcd-access-members-client"),
    "ec2-15-subnets-assign-no-public-ip": (
        lambda s: changed(s, "aws:ec2/subnet:Subnet", "etcd-private-1", lambda p: p.update(mapPublicIpOnLaunch=True)),
        "etcd-private-1"),
    "ssm-1-instances-managed-by-ssm": (
        lambda s: [r for r in s if not (r.type.endswith("RolePolicy") and r.name == "etcd-access-2-ssm-agent")],
        "etcd-etcd-2"),
    "iam-no-parameter-reads-on-everything": (
        lambda s: [*s, attachment("etcd-bastion-core", "etcd-bastion", CORE)], "etcd-bastion-core"),
    "ssm-securestrings-under-the-stack-key": (
        lambda s: [without_key(r) if r.name == "etcd-pki-etcd-1-key" else r for r in s], "etcd-pki-etcd-1-key"),
    "s3-1-s3-8-bucket-blocks-public-access": (
        lambda s: changed(s, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", None,
                          lambda p: p.update(restrictPublicBuckets=False)),
        "etcd-backup"),
    "s3-5-bucket-refuses-plain-http": (lambda s: without(s, "aws:s3/bucketPolicy:BucketPolicy"), "etcd-backup"),
    "s3-14-bucket-versioned": (
        lambda s: changed(s, "aws:s3/bucketVersioning:BucketVersioning", None,
                          lambda p: p.update(versioningConfiguration={"status": "Suspended"})),
        "etcd-backup"),
    "s3-bucket-encrypted": (
        lambda s: without(s, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"),
        "etcd-backup"),
    "elb-load-balancer-internal": (
        lambda s: changed(s, "aws:lb/loadBalancer:LoadBalancer", None, lambda p: p.update(internal=False)),
        "etcd-client"),
    "cis-etcd-2-1-client-cert-and-key": (
        lambda s: changed(s, INSTANCE, MEMBER, edit_member_config(("client-transport-security", "key-file"), "")),
        MEMBER),
    "cis-etcd-2-2-client-cert-auth": (
        lambda s: changed(s, INSTANCE, MEMBER,
                          edit_member_config(("client-transport-security", "client-cert-auth"), False)),
        MEMBER),
    "cis-etcd-2-3-no-client-auto-tls": (
        lambda s: changed(s, INSTANCE, MEMBER, edit_member_config(("client-transport-security", "auto-tls"), True)),
        MEMBER),
    "cis-etcd-2-4-peer-cert-and-key": (
        lambda s: changed(s, INSTANCE, MEMBER, edit_member_config(("peer-transport-security", "cert-file"), None)),
        MEMBER),
    "cis-etcd-2-5-peer-client-cert-auth": (
        lambda s: changed(s, INSTANCE, MEMBER,
                          edit_member_config(("peer-transport-security", "client-cert-auth"), False)),
        MEMBER),
    "cis-etcd-2-6-no-peer-auto-tls": (
        lambda s: changed(s, INSTANCE, MEMBER, edit_member_config(("peer-transport-security", "auto-tls"), True)),
        MEMBER),
    "cis-etcd-2-7-cluster-own-ca": (
        lambda s: changed(s, INSTANCE, MEMBER, edit_member_config(("ca",), a_certificate_not_a_ca())), MEMBER),
    "ssh-only-from-narrow-ranges": (
        lambda s: changed(s, INGRESS, "etcd-bastion-ssh-0", lambda p: p.update(cidrIpv4="198.0.0.0/8")),
        "etcd-bastion-ssh-0"),
    "imds-hop-limit-one": (
        lambda s: changed(s, INSTANCE, MEMBER, lambda p: p["metadataOptions"].update(httpPutResponseHopLimit=2)),
        MEMBER),
    "etcd-peers-pinned": (
        lambda s: changed(s, INSTANCE, MEMBER, edit_member_config(("peer-transport-security", "allowed-hostname"), [])),
        MEMBER),
}


def test_every_control_has_a_violating_stack():
    assert set(VIOLATIONS) == {c.name for c in CONTROLS}


@pytest.mark.parametrize("control", CONTROLS, ids=[c.name for c in CONTROLS])
def test_each_control_fires_on_its_violation_and_names_the_resource(stack, control):
    breaking, culprit = VIOLATIONS[control.name]
    found = violations(breaking(stack))
    assert found[control.name], control.name
    assert all(f" {culprit}:" in message for message in found[control.name]), found[control.name]
    # Breaking one promise trips no unrelated control.
    assert {name for name, messages in found.items() if messages} == {control.name}


ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"


@pytest.mark.parametrize("default", [
    {"sseAlgorithm": "AES256"},
    {"sseAlgorithm": "aws:kms"},  # the account's aws/s3 key
    {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": "arn:aws:kms:eu-west-2:123456789012:key/not-the-stacks"},
], ids=["SSE-S3", "aws/s3", "another key"])
def test_a_bucket_encrypted_but_not_under_the_stacks_key_is_refused(stack, default):
    def under(props: dict) -> None:
        props["rules"][0]["applyServerSideEncryptionByDefault"] = default

    broken = changed(stack, ENCRYPTION, None, under)
    if "kmsMasterKeyId" in default:  # a key from elsewhere: the setting no longer depends on the stack's key
        broken = [Resource(r.type, r.name, r.props, {k: v for k, v in r.property_dependencies.items() if k != "rules"})
                  if r.type == ENCRYPTION else r for r in broken]
    (message,) = violations(broken)["s3-bucket-encrypted"]
    assert message.endswith("etcd-backup: encrypted by default, but not under a KMS key of the stack"), message


def test_a_member_system_trust_store_is_not_the_clusters_ca(stack):
    broken = changed(stack, INSTANCE, MEMBER, edit_member_config(
        ("peer-transport-security", "trusted-ca-file"), "/etc/pki/tls/certs/ca-bundle.crt"))
    (message,) = violations(broken)["cis-etcd-2-7-cluster-own-ca"]
    assert "/etc/pki/tls/certs/ca-bundle.crt, which is not the cluster's CA the user_data writes" in message


@pytest.mark.parametrize("statement", [
    {"Effect": "Allow", "Action": "ssm:GetParameter*", "Resource": "*"},
    {"Effect": "Allow", "Action": ["ssm:Get*"], "Resource": "arn:aws:ssm:*:*:parameter/*"},
    {"Effect": "Allow", "Action": "ssm:getparametersbypath", "Resource": "arn:aws:ssm:eu-west-2:123456789012:*"},
    {"Effect": "Allow", "Action": "*", "Resource": "*"},
])
def test_an_inline_policy_reading_every_parameter_is_refused(stack, statement):
    broken = changed(stack, "aws:iam/rolePolicy:RolePolicy", "etcd-bastion-ssm-agent",
                     lambda p: p.update(policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]})))
    found = violations(broken)["iam-no-parameter-reads-on-everything"]
    assert found == ["aws:iam/rolePolicy:RolePolicy etcd-bastion-ssm-agent: allows reading SSM parameters on every "
                     "parameter"]


def test_a_parameter_read_on_the_members_own_path_is_not_everything(stack):
    own = {"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": "arn:aws:ssm:*:*:parameter/etcd/etcd-0/*"}
    broken = changed(stack, "aws:iam/rolePolicy:RolePolicy", "etcd-bastion-ssm-agent",
                     lambda p: p.update(policy=json.dumps({"Version": "2012-10-17", "Statement": [own]})))
    assert violations(broken)["iam-no-parameter-reads-on-everything"] == []


def test_the_ca_bundle_as_a_plain_string_is_refused(stack):
    broken = changed(stack, "aws:ssm/parameter:Parameter", "etcd-pki-ca-bundle", lambda p: p.update(type="String"))
    (message,) = violations(broken)["ssm-securestrings-under-the-stack-key"]
    assert message.startswith("aws:ssm/parameter:Parameter etcd-pki-ca-bundle: PEM material in a plain String")
@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0", "2001:db8::/32", "10.0.0.0/15"])
def test_world_and_too_wide_ssh_ranges_fire_the_ssh_control(stack, cidr):
    key = "cidrIpv6" if ":" in cidr else "cidrIpv4"
    broken = changed(stack, INGRESS, "etcd-bastion-ssh-0", lambda p: p.pop("cidrIpv4") and p.update({key: cidr}))
    (message,) = violations(broken)["ssh-only-from-narrow-ranges"]
    assert cidr in message


@pytest.mark.parametrize("rule", [{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["172.16.0.0/12"]},
                                  {"protocol": "tcp", "fromPort": 20, "toPort": 30, "cidrBlocks": ["172.16.0.0/12"]}])
def test_a_rule_that_covers_port_22_counts_as_ssh(rule):
    group = Resource("aws:ec2/securityGroup:SecurityGroup", "g", {"ingress": [rule]})
    assert violations([group])["ssh-only-from-narrow-ranges"]
    narrow = {**rule, "cidrBlocks": ["10.1.0.0/16"]}
    assert not violations([Resource("aws:ec2/securityGroup:SecurityGroup", "g", {"ingress": [narrow]})])[
        "ssh-only-from-narrow-ranges"]


def test_an_unset_hop_limit_is_a_violation_the_image_would_decide_it(stack):
    broken = changed(stack, INSTANCE, MEMBER, lambda p: p["metadataOptions"].pop("httpPutResponseHopLimit"))
    assert violations(broken)["imds-hop-limit-one"]


def test_a_pin_in_a_key_the_members_etcd_ignores_is_no_pin(stack):
    """etcd before 3.5.15 ignores allowed-hostname in the config file: the pin must be in PeerTLSInfo there."""
    def old_etcd(props: dict) -> None:
        document = yaml.safe_load(gzip.decompress(base64.b64decode(props["userDataBase64"])))
        for file in document["write_files"]:
            if file["path"] == "/usr/local/sbin/etcd-bootstrap":
                file["content"] = file["content"].replace("readonly ETCD_VERSION=3.6.14", "readonly ETCD_VERSION=3.5.1")
        props["userDataBase64"] = base64.b64encode(gzip.compress(yaml.safe_dump(document).encode())).decode()

    found = violations(changed(stack, INSTANCE, MEMBER, old_etcd))["etcd-peers-pinned"]
    assert found and all("etcd 3.5.1 reads" in message for message in found)


def test_unknown_values_at_preview_are_not_judged(stack):
    unknown = changed(stack, INSTANCE, MEMBER, lambda p: p.update(userDataBase64=None))
    assert not any(violations(unknown).values())


# --- the pack's adapters ----------------------------------------------------------------------

def engine_view(r: Resource) -> SimpleNamespace:
    return SimpleNamespace(resource_type=r.type, name=r.name, props=r.props, property_dependencies={
        prop: [SimpleNamespace(resource_type=t, name=n) for t, n in deps] for prop, deps in
        r.property_dependencies.items()})


def run_policy(policy, stack: list[Resource]) -> list[str]:
    reported: list[str] = []
    # pulumi-policy keeps the validate function private; the engine calls it just like this.
    validate = getattr(policy, f"_{type(policy).__name__}__validate")
    views = [engine_view(r) for r in stack]
    if type(policy).__name__ == "StackValidationPolicy":
        validate(SimpleNamespace(resources=views), lambda message, urn=None: reported.append(message))
    else:
        for view in views:
            validate(view, lambda message, urn=None: reported.append(message))
    return reported


def test_the_pack_holds_one_mandatory_policy_per_control():
    policies = pack.policies()
    assert [p.name for p in policies] == [c.name for c in CONTROLS]
    assert {str(p.enforcement_level) for p in policies} == {"EnforcementLevel.MANDATORY"}
    for policy, control in zip(policies, CONTROLS, strict=True):
        kind = "StackValidationPolicy" if control.scope == "stack" else "ResourceValidationPolicy"
        assert type(policy).__name__ == kind


@pytest.mark.parametrize("name", ["ec2-6-vpc-flow-logs-enabled", "ec2-8-imdsv2-required",
                                  "cis-etcd-2-2-client-cert-auth", "iam-no-parameter-reads-on-everything",
                                  "ssm-securestrings-under-the-stack-key", "ssm-1-instances-managed-by-ssm"])
def test_the_pack_reports_what_the_control_finds(stack, name):
    policy = next(p for p in pack.policies() if p.name == name)
    assert run_policy(policy, stack) == []
    breaking, culprit = VIOLATIONS[name]
    reported = run_policy(policy, breaking(stack))
    assert reported and all(f" {culprit}:" in message for message in reported)


def test_the_pack_entry_point_builds_the_pack_from_the_adapters():
    from etcd_stack.preview.offline import PROJECT_DIR

    source = (PROJECT_DIR / "policy" / "__main__.py").read_text()
    assert "from pack import policies" in source and "policies=policies()" in source
    settings = yaml.safe_load((PROJECT_DIR / "policy" / "PulumiPolicy.yaml").read_text())
    assert settings["runtime"]["name"] == "python"
    compile(source, "__main__.py", "exec")
