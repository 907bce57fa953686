"""The members, their certificates, discovery, load balancer and names, as the program registers them."""

from __future__ import annotations

import base64
import ipaddress
import json

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID

from etcd_stack.config import reserved
from etcd_stack.member.certificates import PEER_NAME
from etcd_stack.preview import offline
from etcd_stack.preview.wire import reveal
from tests.conftest import user_data_of, written_file

INSTANCE = "aws:ec2/instance:Instance"
ENI = "aws:ec2/networkInterface:NetworkInterface"
VOLUME = "aws:ebs/volume:Volume"
ATTACHMENT = "aws:ec2/volumeAttachment:VolumeAttachment"
PARAMETER = "aws:ssm/parameter:Parameter"
RECORD = "aws:route53/record:Record"
DYNAMIC = "pulumi-python:dynamic:Resource"


def stack_raw(**etcd):
    from tests.conftest import encode

    raw = {"aws:region": "eu-west-2", "etcd:bastion": "false"}
    raw.update({f"etcd:{key}": encode(value) for key, value in etcd.items()})
    return raw


@pytest.fixture(scope="module")
def static():
    return offline.run(stack_raw(bootstrap="static", clusterSize=5), "test")


@pytest.fixture(scope="module")
def discovery():
    return offline.run(stack_raw(), "test")


def tokens(run):
    """Discovery tokens (the other dynamic resource records the deployed etcd version)."""
    return [r for r in run.of_type(DYNAMIC) if "endpoint" in r.inputs]


def members_of(run):
    return sorted((i for i in run.of_type(INSTANCE) if "etcd-member" in i.inputs["tags"]),
                  key=lambda i: i.inputs["tags"]["etcd-member"])


def config_of(instance) -> dict:
    document = yaml.safe_load(user_data_of(instance))
    (etcd_yaml,) = [f["content"] for f in document["write_files"] if f["path"] == "/etc/etcd/etcd.yaml"]
    return yaml.safe_load(etcd_yaml)


def interface_of(run, instance):
    return run.by_id(instance.inputs["primaryNetworkInterface"]["networkInterfaceId"])


def certificate(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(names.get_values_for_type(x509.DNSName)), {str(a) for a in names.get_values_for_type(x509.IPAddress)}


# --- identity --------------------------------------------------------------------------------

def test_members_spread_round_robin_over_the_zones(static):
    zones = [interface_of(static, i).state["privateIp"] for i in members_of(static)]
    subnets = {s.id: s for s in static.of_type("aws:ec2/subnet:Subnet")}
    placed = [subnets[interface_of(static, i).inputs["subnetId"]] for i in members_of(static)]
    assert [s.inputs["availabilityZone"][-1] for s in placed] == list("abcab")
    assert all(s.inputs["tags"]["tier"] == "private" for s in placed)
    for address, subnet in zip(zones, placed, strict=True):
        assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet.inputs["cidrBlock"])
    assert len(set(zones)) == 5


def test_each_member_owns_its_interface_volume_and_name_not_the_instance(static):
    for index, instance in enumerate(members_of(static)):
        interface = interface_of(static, instance)
        (attachment,) = [a for a in static.of_type(ATTACHMENT) if a.inputs["instanceId"] == instance.id]
        volume = static.by_id(attachment.inputs["volumeId"])
        assert interface.inputs["privateIps"] == [static.outputs["members"][index]["ip"]]
        assert volume.inputs["availabilityZone"] == static.outputs["members"][index]["availabilityZone"]
        assert "subnetId" not in instance.inputs and "privateIp" not in instance.inputs
        # Neither the interface nor the volume depends on the instance: a replacement keeps both.
        assert instance.name not in interface.dependencies and instance.name not in volume.dependencies
        assert instance.delete_before_replace  # the interface is primary to one instance at a time
        assert attachment.inputs["stopInstanceBeforeDetaching"] is True


def test_a_new_instance_type_or_image_leaves_identity_and_data_untouched(static):
    other = offline.run(stack_raw(bootstrap="static", clusterSize=5, instanceType="m7g.large"), "test")
    for kind in (ENI, VOLUME, RECORD):
        assert [r.public() for r in static.of_type(kind)] == [r.public() for r in other.of_type(kind)]
    assert {i.inputs["ami"] for i in members_of(other)} != {i.inputs["ami"] for i in members_of(static)}


def test_data_volumes_are_encrypted_gp3_of_the_configured_size(run_stack):
    run = run_stack(dataVolumeSize=50, bastion=False)
    volumes = run.of_type(VOLUME)
    assert len(volumes) == 3
    for volume in volumes:
        assert (volume.inputs["type"], volume.inputs["encrypted"], volume.inputs["size"]) == ("gp3", True, 50)


def test_member_instances_are_private_hardened_and_use_their_own_profile(static):
    profiles = {p.name: p for p in static.of_type("aws:iam/instanceProfile:InstanceProfile")}
    for index, instance in enumerate(members_of(static)):
        inputs = instance.inputs
        assert inputs["metadataOptions"] == {"httpEndpoint": "enabled", "httpTokens": "required",
                                             "httpPutResponseHopLimit": 1}
        assert inputs["rootBlockDevice"]["encrypted"] is True
        assert not inputs.get("associatePublicIpAddress")
        assert inputs["iamInstanceProfile"] == profiles[f"etcd-access-{index}"].state["name"]
        assert inputs["instanceType"] == "m7i.large"


def test_interfaces_carry_the_member_security_group(static):
    group = static.named("etcd-access-members", "aws:ec2/securityGroup:SecurityGroup")
    for interface in static.of_type(ENI):
        assert interface.inputs["securityGroups"] == [group.id]


# --- PKI ------------------------------------------------------------------------------------

def test_member_certificates_chain_to_the_ca_and_name_the_member(static):
    ca = certificate(static.outputs["caCertPem"])
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    records = {r.inputs["name"]: r.inputs["records"] for r in static.of_type(RECORD) if "records" in r.inputs}
    for index, instance in enumerate(members_of(static)):
        member = static.outputs["members"][index]
        cert_pem = static.named(f"etcd-pki-{member['name']}", "tls:index/locallySignedCert:LocallySignedCert")
        cert = certificate(cert_pem.state["certPem"])
        cert.verify_directly_issued_by(ca)
        dns_names, ips = sans(cert)
        assert ips == {interface_of(static, instance).state["privateIp"], "127.0.0.1"}
        assert dns_names == {member["dnsName"], "client.etcd.test.internal", "localhost", PEER_NAME}
        assert records[member["dnsName"]] == [member["ip"]]
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


def test_the_operator_certificate_is_a_client_certificate_of_the_same_ca(static):
    ca = certificate(static.outputs["caCertPem"])
    operator = certificate(static.outputs["operatorCertPem"])
    operator.verify_directly_issued_by(ca)
    usage = operator.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    key = load_pem_private_key(static.outputs["operatorKeyPem"].encode(), None)
    assert key.public_key().public_numbers() == operator.public_key().public_numbers()


def test_private_keys_are_secrets_everywhere_they_go(static):
    for parameter in static.of_type(PARAMETER):
        if parameter.name.endswith("-key"):
            assert parameter.public()["inputs"]["value"] == "[secret]"
    for signed in static.of_type("tls:index/locallySignedCert:LocallySignedCert"):
        assert signed.public()["inputs"]["caPrivateKeyPem"] == "[secret]"
    inventory = json.dumps([r.public() for r in static.resources])
    assert "PRIVATE KEY" not in inventory


def test_member_key_and_certificate_sit_in_ssm_under_the_member_path(static):
    for member in static.outputs["members"]:
        key = static.named(f"etcd-pki-{member['name']}-key", PARAMETER)
        cert = static.named(f"etcd-pki-{member['name']}-cert", PARAMETER)
        assert key.inputs["name"] == f"/etcd-aws/test/etcd/{member['name']}/tls/key"
        assert cert.inputs["name"] == f"/etcd-aws/test/etcd/{member['name']}/tls/cert"
        assert key.inputs["type"] == cert.inputs["type"] == "SecureString"
        private = load_pem_private_key(reveal(key.inputs["value"]).encode(), None)
        public = certificate(reveal(cert.inputs["value"])).public_key()
        assert private.public_key().public_numbers() == public.public_numbers()


def test_each_member_may_read_and_decrypt_only_its_own_secrets(static):
    from etcd_stack.preview.mocks import ACCOUNT_ID
    from tests.cloud.effective_access import StackAccess

    access = StackAccess(static, ACCOUNT_ID, static.config.region)
    for index in range(5):
        role = static.named(f"etcd-access-{index}", "aws:iam/role:Role")
        assert static.named(f"etcd-etcd-{index}-read-tls", "aws:iam/rolePolicy:RolePolicy").inputs["role"] == role.id
        assert access.readable(access.role(role.name)) == sorted(
            [f"/etcd-aws/test/etcd/etcd-{index}/tls/cert", f"/etcd-aws/test/etcd/etcd-{index}/tls/key",
             "/etcd-aws/test/etcd/tls/ca-bundle"])


# --- configuration and user_data ------------------------------------------------------------

def test_each_member_config_names_itself_and_the_same_static_cluster(static):
    configs = [config_of(i) for i in members_of(static)]
    members = static.outputs["members"]
    expected = ",".join(f"{m['name']}=https://{m['dnsName']}:2380" for m in members)
    for config, member in zip(configs, members, strict=True):
        assert config["name"] == member["name"]
        assert config["initial-cluster"] == expected
        assert config["initial-cluster-token"] == "etcd-test"
        assert config["initial-advertise-peer-urls"] == f"https://{member['dnsName']}:2380"
        assert config["listen-peer-urls"] == f"https://{member['ip']}:2380"
        assert "discovery" not in config
    assert not tokens(static)
    assert static.outputs["discoveryUrl"] is None


def test_discovery_members_share_the_token_minted_once(discovery):
    (token,) = tokens(discovery)
    assert token.inputs["endpoint"] == "https://discovery.etcd.io" and token.inputs["size"] == 3
    url = token.state["url"]
    assert url.startswith("https://discovery.etcd.io/")
    for instance in members_of(discovery):
        config = config_of(instance)
        assert config["discovery"] == url
        assert "initial-cluster" not in config
    assert discovery.outputs["discoveryUrl"] == url


def test_a_premade_discovery_url_needs_no_token():
    url = "https://discovery.example.org/6c007a14875d53d9bf0ef5a6fc0257c817f0fb83"
    run = offline.run(stack_raw(discoveryUrl=url), "test")
    assert not tokens(run)
    assert {config_of(i)["discovery"] for i in members_of(run)} == {url}


def test_user_data_holds_no_private_key_and_fits_ec2(static):
    keys = [reveal(k.state["privateKeyPem"]) for k in static.of_type("tls:index/privateKey:PrivateKey")]
    assert len(keys) == 1 + 5 + 1
    for instance in members_of(static):
        user_data = user_data_of(instance)
        assert "PRIVATE KEY" not in user_data
        assert not any(key.splitlines()[1] in user_data for key in keys)
        assert len(base64.b64decode(instance.inputs["userDataBase64"])) < 16 * 1024
        assert written_file(user_data, "/etc/etcd/pki/ca.crt") == static.outputs["caCertPem"]


def test_the_bootstrap_script_fetches_the_member_own_parameters(static):
    for instance in members_of(static):
        name = instance.inputs["tags"]["etcd-member"]
        script = written_file(user_data_of(instance), "/usr/local/sbin/etcd-bootstrap")
        assert f"readonly KEY_PARAMETER=/etcd-aws/test/etcd/{name}/tls/key" in script
        assert f"readonly CERT_PARAMETER=/etcd-aws/test/etcd/{name}/tls/cert" in script
        assert "readonly SHA256_AMD64=ffe840ff9295808e88cce2794a18a5ac87f12a5203c8314d0bf6aa119b41bac5" in script


# --- load balancer and DNS ------------------------------------------------------------------

def test_the_load_balancer_is_internal_tcp_with_an_http_health_check(static):
    (balancer,) = static.of_type("aws:lb/loadBalancer:LoadBalancer")
    (group,) = static.of_type("aws:lb/targetGroup:TargetGroup")
    (listener,) = static.of_type("aws:lb/listener:Listener")
    private = sorted(s.id for s in static.of_type("aws:ec2/subnet:Subnet") if s.inputs["tags"]["tier"] == "private")
    assert balancer.inputs["internal"] is True and balancer.inputs["loadBalancerType"] == "network"
    assert balancer.inputs["enableCrossZoneLoadBalancing"] is True
    assert sorted(m["subnetId"] for m in balancer.inputs["subnetMappings"]) == private
    assert (group.inputs["port"], group.inputs["protocol"], group.inputs["targetType"]) == (2379, "TCP", "ip")
    health = group.inputs["healthCheck"]
    assert (health["protocol"], health["port"], health["path"], health["matcher"]) == ("HTTP", "2381", "/health", "200")
    assert (listener.inputs["port"], listener.inputs["protocol"]) == (2379, "TCP")
    assert listener.inputs["loadBalancerArn"] == balancer.state["arn"]
    assert listener.inputs["defaultActions"] == [{"type": "forward", "targetGroupArn": group.state["arn"]}]


def test_every_member_is_a_target_by_its_fixed_address(static):
    (group,) = static.of_type("aws:lb/targetGroup:TargetGroup")
    attachments = static.of_type("aws:lb/targetGroupAttachment:TargetGroupAttachment")
    assert sorted(a.inputs["targetId"] for a in attachments) == sorted(m["ip"] for m in static.outputs["members"])
    assert {(a.inputs["targetGroupArn"], a.inputs["port"]) for a in attachments} == {(group.state["arn"], 2379)}


def test_the_load_balancer_has_fixed_addresses_in_the_private_subnets_apart_from_every_member(static):
    (balancer,) = static.of_type("aws:lb/loadBalancer:LoadBalancer")
    members = {member["ip"] for member in static.outputs["members"]}
    mappings = balancer.inputs["subnetMappings"]
    assert len(mappings) == 3
    for mapping in mappings:
        subnet = ipaddress.IPv4Network(static.by_id(mapping["subnetId"]).inputs["cidrBlock"])
        address = ipaddress.IPv4Address(mapping["privateIpv4Address"])
        assert address in subnet and address not in reserved(subnet)
        assert str(address) not in members


def test_neither_the_load_balancer_nor_the_instances_wait_for_each_other_or_nat(static):
    (balancer,) = static.of_type("aws:lb/loadBalancer:LoadBalancer")
    waited = set(balancer.dependencies)
    assert not waited & {r.name for r in [*static.of_type(ENI), *static.of_type(INSTANCE)]}
    # Its subnets and its own security group (which an NLB gets only at creation).
    assert waited <= {r.name for r in static.of_type("aws:ec2/subnet:Subnet")} | {"etcd-access-load-balancer"}
    for instance in members_of(static):
        assert not {"etcd-client", "etcd-nat-0"} & set(instance.dependencies)


def test_names_resolve_inside_the_vpc_and_the_client_name_points_at_the_balancer(static):
    (zone,) = static.of_type("aws:route53/zone:Zone")
    (balancer,) = static.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert zone.inputs["name"] == "etcd.test.internal"
    assert zone.inputs["vpcs"] == [{"vpcId": static.of_type("aws:ec2/vpc:Vpc")[0].id}]
    client = static.named("etcd-dns-client", RECORD)
    assert client.inputs["name"] == "client.etcd.test.internal" and client.inputs["type"] == "A"
    balancer_ips = sorted(m["privateIpv4Address"] for m in balancer.inputs["subnetMappings"])
    assert sorted(client.inputs["records"]) == balancer_ips
    assert "etcd-client" not in client.dependencies
    assert static.outputs["clientEndpoint"] == "https://client.etcd.test.internal:2379"
    assert static.outputs["loadBalancerDnsName"] == balancer.state["dnsName"]


def test_outputs_hand_the_operator_working_etcdctl_commands(static):
    commands = static.outputs["etcdctl"]
    assert commands[0] == "pulumi stack output caCertPem > etcd-ca.crt"
    health = next(c for c in commands if c.endswith("endpoint health"))
    for member in static.outputs["members"]:
        assert f"https://{member['dnsName']}:2379" in health
    assert any("--endpoints https://client.etcd.test.internal:2379" in c and c.endswith("member list --write-out table")
               for c in commands)
