from __future__ import annotations

import ipaddress
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from etcd_stack import config, releases
from etcd_stack.config import Bootstrap, ConfigError, EtcdVersion, NatStrategy, architecture
from etcd_stack.member import certificates
from etcd_stack.member.certificates import PEER_NAME
from tests.conftest import openssh_public


def load(raw: dict[str, str]) -> config.StackConfig:
    return config.load(raw, "test")


def test_defaults_with_the_bastion_off():
    cfg = load({"aws:region": "eu-west-2", "etcd:bastion": "false"})
    assert cfg.cluster_size == 3
    assert cfg.version == EtcdVersion(3, 6, 14)
    assert cfg.bootstrap is Bootstrap.DISCOVERY
    assert cfg.discovery_endpoint == "https://discovery.etcd.io"
    assert cfg.discovery_url is None
    assert cfg.vpc_cidr == ipaddress.IPv4Network("10.0.0.0/16")
    assert cfg.nat_strategy is NatStrategy.SINGLE
    assert (cfg.heartbeat_ms, cfg.election_ms) == (100, 1000)
    assert cfg.ssh_allowed_cidrs == ()
    assert cfg.tags == ()
    assert cfg.common_tags == {"etcd-cluster": "etcd", "pulumi-stack": "test"}


def test_every_key_parses_its_documented_default():
    for key in config.KEYS:
        if key.default is not None:
            key.parse(f"etcd:{key.name}", key.default)


def test_values_are_typed(raw_config):
    cfg = load(raw_config(clusterSize=5, version="3.5.27", bootstrap="static", vpcCidr="172.20.0.0/20",
                          natStrategy="one-per-az", heartbeatMs=50, electionMs=500, dataVolumeSize=100,
                          tags={"team": "platform", "cost-centre": "42"}))
    assert cfg.cluster_size == 5
    assert cfg.version == EtcdVersion(3, 5, 27) and str(cfg.version) == "3.5.27"
    assert cfg.bootstrap is Bootstrap.STATIC
    assert cfg.vpc_cidr == ipaddress.IPv4Network("172.20.0.0/20")
    assert cfg.nat_strategy is NatStrategy.ONE_PER_AZ
    assert (cfg.heartbeat_ms, cfg.election_ms, cfg.data_volume_size) == (50, 500, 100)
    assert cfg.ssh_allowed_cidrs == (ipaddress.ip_network("198.51.100.7/32"), ipaddress.ip_network("2001:db8::/48"))
    assert dict(cfg.tags) == {"team": "platform", "cost-centre": "42"}
    assert cfg.common_tags["team"] == "platform"


def test_the_config_object_is_frozen(raw_config):
    cfg = load(raw_config())
    with pytest.raises(AttributeError):
        cfg.cluster_size = 5  # type: ignore[misc]


@pytest.mark.parametrize("size", ["1", "3", "5", "7"])
def test_odd_cluster_sizes_are_accepted(raw_config, size):
    assert load(raw_config(clusterSize=size)).cluster_size == int(size)


@pytest.mark.parametrize("version", ["3.4.27", "3.5.27", "3.6.14"])
def test_supported_release_lines(raw_config, version):
    assert str(load(raw_config(version=version)).version) == version


def test_a_version_without_a_known_checksum_is_refused_with_the_known_ones(raw_config):
    with pytest.raises(ConfigError) as caught:
        load(raw_config(version="3.7.3", bootstrap="static"))
    message = str(caught.value)
    assert message.startswith("etcd:version: '3.7.3' is not allowed: a release whose amd64 checksum is known: ")
    assert "3.4.27, 3.5.3 to 3.5.33, 3.6.0 to 3.6.14, 3.7.1" in message


def test_graviton_members_need_an_arm64_checksum(raw_config, monkeypatch):
    # Every release in the table has both sums today; one known only for amd64 shows the rule.
    monkeypatch.setitem(releases.SHA256, "3.6.15", {"amd64": "0" * 64})
    assert load(raw_config(version="3.6.15", instanceType="m7i.large")).version == EtcdVersion(3, 6, 15)
    refused = (r"^etcd:version: '3\.6\.15' .*arm64 checksum is known: .*3\.6\.0 to 3\.6\.14, 3\.7\.1, "
               r"or set etcd:releaseSha256 to the sum of etcd-v3\.6\.15-linux-arm64\.tar\.gz$")
    with pytest.raises(ConfigError, match=refused):
        load(raw_config(version="3.6.15", instanceType="m7g.large"))


def test_a_user_sum_admits_a_version_without_a_published_one(raw_config):
    cfg = load(raw_config(version="3.6.16", releaseSha256="ab" * 32))
    assert (cfg.release_sha256, cfg.release_sum, cfg.release_arch) == ("ab" * 32, "ab" * 32, "amd64")
    graviton = load(raw_config(version="3.6.16", releaseSha256="cd" * 32, instanceType="m7g.large"))
    assert (graviton.release_sum, graviton.release_arch) == ("cd" * 32, "arm64")


def test_without_a_user_sum_the_published_one_applies(raw_config):
    assert load(raw_config(version="3.6.14")).release_sum == releases.SHA256["3.6.14"]["amd64"]
    assert load(raw_config(version="3.6.14", instanceType="m7g.large")).release_sum == \
        releases.SHA256["3.6.14"]["arm64"]


def test_a_version_without_a_sum_names_the_user_sum_as_the_way(raw_config):
    with pytest.raises(ConfigError, match=r"or set etcd:releaseSha256 to the sum of etcd-v3\.6\.16-linux-amd64"):
        load(raw_config(version="3.6.16"))


def test_the_published_sum_may_be_repeated_but_not_contradicted(raw_config):
    published = releases.SHA256["3.6.14"]["amd64"]
    assert load(raw_config(version="3.6.14", releaseSha256=published)).release_sum == published
    with pytest.raises(ConfigError) as caught:
        load(raw_config(version="3.6.14", releaseSha256="0" * 64))
    assert str(caught.value).startswith("etcd:releaseSha256: '0000")
    assert str(caught.value).endswith(f"is not allowed: unset, or the published amd64 sum of etcd 3.6.14 ({published})")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("text", ["AB" * 32, "ab" * 31, "ab" * 33, "g" * 64, " " + "ab" * 32, ""])
def test_a_user_sum_is_64_lowercase_hex_digits(raw_config, text):
    with pytest.raises(ConfigError, match=r"^etcd:releaseSha256: .* is not allowed: a SHA-256 of 64 lowercase"):
        load(raw_config(version="3.6.16", releaseSha256=text))


def test_a_premade_discovery_url_is_kept(raw_config):
    url = "https://discovery.example.org/3e86b59982e49066c5d813af1c2e2579cbf573de"
    assert load(raw_config(discoveryUrl=url)).discovery_url == url


def csr(common_name: str, key=None, dns_names: tuple[str, ...] = ()) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)]))
    if dns_names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), False)
    return builder.sign(key or certificates.new_private_key(), hashes.SHA256()).public_bytes(Encoding.PEM).decode()


def test_operator_requests_are_kept_by_person(raw_config):
    alice, bob = csr("alice"), csr("bob")
    cfg = load(raw_config(operatorCsrs={"bob": bob, "alice": alice}))
    assert cfg.operator_csrs == (("alice", alice), ("bob", bob))


OPERATOR_BAD = {
    "another name": (lambda: csr("mallory"), "a request whose common name is 'alice'"),
    "the peer name": (lambda: csr("alice", dns_names=(PEER_NAME,)), "no subject alternative names"),
    "any host name": (lambda: csr("alice", dns_names=("laptop.example.org",)), "no subject alternative names"),
    "an RSA key of 1024 bits": (lambda: csr("alice", rsa.generate_private_key(public_exponent=65537, key_size=1024)),
                                "RSA key of 2048+ bits"),
    "a P-521 key": (lambda: csr("alice", ec.generate_private_key(ec.SECP521R1())), "ECDSA P-256 or P-384"),
    "a forged signature": (lambda: forged(csr("alice")), "signed by its own key"),
}


def forged(pem: str) -> str:
    """The request with one byte of its signature changed."""
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(Encoding.DER))
    der[-3] ^= 0x01
    return x509.load_der_x509_csr(bytes(der)).public_bytes(Encoding.PEM).decode()


@pytest.mark.parametrize("case", OPERATOR_BAD.values(), ids=OPERATOR_BAD.keys())
def test_an_operator_request_that_could_be_more_than_a_person_is_refused(raw_config, case):
    make, allowed = case
    with pytest.raises(ConfigError) as caught:
        load(raw_config(operatorCsrs={"alice": make()}))
    assert caught.value.key == "etcd:operatorCsrs.alice" and allowed in str(caught.value)


def test_clients_default_to_the_vpc_and_listing_any_source_replaces_it(raw_config):
    vpc = ipaddress.ip_network("10.7.0.0/16")  # the VPC's own range: the stack's, or an existing VPC's
    assert load(raw_config()).client_sources(vpc) == (vpc,)
    listed = load(raw_config(clientCidrs=["10.1.0.0/16", "10.1.0.0/16"]))
    assert listed.client_cidrs == listed.client_sources(vpc) == (ipaddress.ip_network("10.1.0.0/16"),)
    grouped = load(raw_config(clientSecurityGroupIds=["sg-0123456789abcdef0"]))
    assert grouped.client_sources(vpc) == () and grouped.client_security_group_ids == ("sg-0123456789abcdef0",)


@pytest.mark.parametrize("cidr", ["198.51.0.0/16", "2001:db8:1::/48", "203.0.113.9/32"])
def test_ssh_ranges_of_the_narrowest_allowed_width_are_kept(raw_config, cidr):
    assert load(raw_config(sshAllowedCidrs=[cidr])).ssh_allowed_cidrs == (ipaddress.ip_network(cidr),)


def test_a_self_hosted_discovery_endpoint_loses_its_trailing_slash(raw_config):
    assert load(raw_config(discoveryEndpoint="https://discovery.example.org/v2/")).discovery_endpoint == (
        "https://discovery.example.org/v2"
    )


def test_duplicate_ssh_cidrs_are_listed_once(raw_config):
    cfg = load(raw_config(sshAllowedCidrs=["198.51.100.7/32", "198.51.100.7/32"]))
    assert cfg.ssh_allowed_cidrs == (ipaddress.ip_network("198.51.100.7/32"),)


def test_rsa_keys_of_2048_bits_are_accepted(raw_config, rsa_key):
    assert load(raw_config(sshPublicKey=rsa_key)).ssh_public_key == rsa_key


def test_ssh_settings_may_stay_while_the_bastion_is_off(raw_config):
    cfg = load(raw_config(bastion=False))
    assert not cfg.bastion and cfg.ssh_allowed_cidrs


@pytest.mark.parametrize(
    ("instance_type", "arch"),
    [("m7i.large", "x86_64"), ("m7g.large", "arm64"), ("c6gn.xlarge", "arm64"), ("t4g.micro", "arm64"),
     ("r8gd.2xlarge", "arm64"), ("a1.medium", "arm64"), ("is4gen.large", "arm64"), ("g4dn.xlarge", "x86_64"),
     ("m7i-flex.large", "x86_64"), ("i3en.metal", "x86_64"), ("u-6tb1.metal", "x86_64")],
)
def test_architecture_follows_the_instance_family(raw_config, instance_type, arch):
    assert load(raw_config(instanceType=instance_type)).instance_type == instance_type
    assert architecture(instance_type) == arch


# Each bad value: (overrides, the key the error must name, a fragment of what is allowed).
BAD = {
    "size even": ({"clusterSize": 4}, "etcd:clusterSize", "one of 1, 3, 5 or 7"),
    "size zero": ({"clusterSize": 0}, "etcd:clusterSize", "one of 1, 3, 5 or 7"),
    "size nine": ({"clusterSize": 9}, "etcd:clusterSize", "one of 1, 3, 5 or 7"),
    "size word": ({"clusterSize": "three"}, "etcd:clusterSize", "one of 1, 3, 5 or 7"),
    "version with v": ({"version": "v3.6.14"}, "etcd:version", "MAJOR.MINOR.PATCH"),
    "version partial": ({"version": "3.6"}, "etcd:version", "MAJOR.MINOR.PATCH"),
    "version 2": ({"version": "2.3.8"}, "etcd:version", "MAJOR.MINOR.PATCH"),
    "version 3.3": ({"version": "3.3.27"}, "etcd:version", "3.4, 3.5, 3.6 or 3.7"),
    "version 3.8": ({"version": "3.8.0"}, "etcd:version", "3.4, 3.5, 3.6 or 3.7"),
    "bootstrap enum": ({"bootstrap": "dns"}, "etcd:bootstrap", "'discovery' or 'static'"),
    "bootstrap case": ({"bootstrap": "Static"}, "etcd:bootstrap", "'discovery' or 'static'"),
    "discovery on 3.7": ({"version": "3.7.1"}, "etcd:bootstrap", "set etcd:bootstrap to 'static'"),
    "endpoint scheme": ({"discoveryEndpoint": "ftp://discovery.etcd.io"}, "etcd:discoveryEndpoint", "an https URL"),
    "endpoint plain http": ({"discoveryEndpoint": "http://discovery.etcd.io"}, "etcd:discoveryEndpoint", "https URL"),
    "url plain http": ({"discoveryUrl": "http://discovery.etcd.io/3e86b5"}, "etcd:discoveryUrl", "an https URL"),
    "endpoint query": ({"discoveryEndpoint": "https://d.example/?x=1"}, "etcd:discoveryEndpoint", "without query"),
    "url no token": ({"discoveryUrl": "https://discovery.etcd.io/"}, "etcd:discoveryUrl", "token path"),
    "url with static": ({"bootstrap": "static", "discoveryUrl": "https://discovery.etcd.io/abc"},
                        "etcd:discoveryUrl", "only with etcd:bootstrap 'discovery'"),
    "endpoint with static": ({"bootstrap": "static", "discoveryEndpoint": "https://d.example"},
                             "etcd:discoveryEndpoint", "only with etcd:bootstrap 'discovery'"),
    "instance type": ({"instanceType": "large"}, "etcd:instanceType", "EC2 instance type"),
    "instance type caps": ({"instanceType": "M7I.LARGE"}, "etcd:instanceType", "EC2 instance type"),
    "bastion type": ({"bastionInstanceType": "t4g"}, "etcd:bastionInstanceType", "EC2 instance type"),
    "volume small": ({"dataVolumeSize": 4}, "etcd:dataVolumeSize", "from 8 to 16384"),
    "volume float": ({"dataVolumeSize": "20.5"}, "etcd:dataVolumeSize", "whole number"),
    "volume huge": ({"dataVolumeSize": 20000}, "etcd:dataVolumeSize", "from 8 to 16384"),
    "heartbeat zero": ({"heartbeatMs": 0}, "etcd:heartbeatMs", "from 10 to 10000"),
    "election short": ({"heartbeatMs": 200, "electionMs": 999}, "etcd:electionMs", "at least 5 x etcd:heartbeatMs"),
    "election long": ({"electionMs": 60000}, "etcd:electionMs", "from 50 to 50000"),
    "vpc public": ({"vpcCidr": "8.8.0.0/16"}, "etcd:vpcCidr", "private range"),
    "vpc too big": ({"vpcCidr": "10.0.0.0/8"}, "etcd:vpcCidr", "/16 to /24"),
    "vpc too small": ({"vpcCidr": "10.0.0.0/25"}, "etcd:vpcCidr", "/16 to /24"),
    "vpc host bits": ({"vpcCidr": "10.0.0.1/16"}, "etcd:vpcCidr", "did you mean 10.0.0.0/16?"),
    "vpc ipv6": ({"vpcCidr": "fd00::/56"}, "etcd:vpcCidr", "IPv4 network"),
    "vpc garbage": ({"vpcCidr": "ten"}, "etcd:vpcCidr", "IPv4 network"),
    "nat enum": ({"natStrategy": "per-az"}, "etcd:natStrategy", "'single' or 'one-per-az'"),
    "retention": ({"flowLogRetentionDays": 10}, "etcd:flowLogRetentionDays", "one of 1, 3, 5"),
    "bastion yes": ({"bastion": "yes"}, "etcd:bastion", "true or false"),
    "ssh world v4": ({"sshAllowedCidrs": ["0.0.0.0/0"]}, "etcd:sshAllowedCidrs", "IPv4 /16 or longer"),
    "ssh world v6": ({"sshAllowedCidrs": ["198.51.100.7/32", "::/0"]}, "etcd:sshAllowedCidrs", "IPv6 /48 or longer"),
    "ssh v4 /15": ({"sshAllowedCidrs": ["198.50.0.0/15"]}, "etcd:sshAllowedCidrs", "IPv4 /16 or longer"),
    "ssh v6 /47": ({"sshAllowedCidrs": ["2001:db8::/47"]}, "etcd:sshAllowedCidrs", "IPv6 /48 or longer"),
    "client public": ({"clientCidrs": ["198.51.100.0/24"]}, "etcd:clientCidrs", "private IPv4 range"),
    "client world": ({"clientCidrs": ["0.0.0.0/0"]}, "etcd:clientCidrs", "private IPv4 range"),
    "client ipv6": ({"clientCidrs": ["fd00::/64"]}, "etcd:clientCidrs", "private IPv4 range"),
    "client number": ({"clientCidrs": [42]}, "etcd:clientCidrs", "CIDR string"),
    "client host bits": ({"clientCidrs": ["10.1.0.1/16"]}, "etcd:clientCidrs", "did you mean 10.1.0.0/16?"),
    "client not a list": ({"clientCidrs": "10.1.0.0/16"}, "etcd:clientCidrs", "a list of CIDRs"),
    "client group": ({"clientSecurityGroupIds": ["sg-12"]}, "etcd:clientSecurityGroupIds", "security group id"),
    "client group name": ({"clientSecurityGroupIds": ["default"]}, "etcd:clientSecurityGroupIds",
                          "security group id"),
    "operator name": ({"operatorCsrs": {"Alice Smith": "x"}}, "etcd:operatorCsrs.Alice Smith", "a person's name"),
    "operator member": ({"operatorCsrs": {"etcd-1": "x"}}, "etcd:operatorCsrs.etcd-1", "not a member name"),
    "operator root": ({"operatorCsrs": {"root": "x"}}, "etcd:operatorCsrs.root", "or root"),
    "operator garbage": ({"operatorCsrs": {"alice": "hello"}}, "etcd:operatorCsrs.alice", "PEM certificate request"),
    "operator list": ({"operatorCsrs": ["alice"]}, "etcd:operatorCsrs", "a map of person"),
    "ssh host bits": ({"sshAllowedCidrs": ["198.51.100.7/24"]}, "etcd:sshAllowedCidrs", "198.51.100.0/24"),
    "ssh not a list": ({"sshAllowedCidrs": "198.51.100.7/32"}, "etcd:sshAllowedCidrs", "a list of CIDRs"),
    "ssh number": ({"sshAllowedCidrs": [42]}, "etcd:sshAllowedCidrs", "CIDR string"),
    "ssh empty": ({"sshAllowedCidrs": []}, "etcd:sshAllowedCidrs", "at least one CIDR while etcd:bastion is true"),
    "ssh missing": ({"sshAllowedCidrs": None}, "etcd:sshAllowedCidrs", "at least one CIDR"),
    "key missing": ({"sshPublicKey": None}, "etcd:sshPublicKey", "while etcd:bastion is true"),
    "key type": ({"sshPublicKey": "ssh-dss AAAAB3NzaC1kc3MAAACBAP"}, "etcd:sshPublicKey", "ssh-ed25519 or ssh-rsa"),
    "key body": ({"sshPublicKey": "ssh-ed25519 AAAA!!!!"}, "etcd:sshPublicKey", "base64 body is intact"),
    "tags list": ({"tags": ["a"]}, "etcd:tags", "a map of tag names"),
    "tag number": ({"tags": {"team": 7}}, "etcd:tags.team", "a string value"),
    "tag aws": ({"tags": {"aws:team": "x"}}, "etcd:tags.aws:team", "not starting with 'aws:'"),
    "tag Name": ({"tags": {"Name": "x"}}, "etcd:tags.Name", "not one of Name"),
    "tag long": ({"tags": {"team": "x" * 257}}, "etcd:tags.team", "at most 256"),
    "cluster name": ({"clusterName": "Etcd_Prod"}, "etcd:clusterName", "lowercase letters"),
    "cluster name long": ({"clusterName": "a" * 17}, "etcd:clusterName", "2 to 16"),
    "cluster name internal-": ({"clusterName": "internal-etcd"}, "etcd:clusterName", "not starting with 'internal-'"),
    "cluster name sg-": ({"clusterName": "sg-etcd"}, "etcd:clusterName", "'sg-'"),
    "tag value semicolon": ({"tags": {"team": "a;b"}}, "etcd:tags.team", "letters, digits, spaces and _ . : / = + - @"),
    "tag value quote": ({"tags": {"team": "o'neil"}}, "etcd:tags.team", "letters, digits, spaces"),
    "tag value newline": ({"tags": {"team": "a\nb"}}, "etcd:tags.team", "letters, digits, spaces"),
    "tag key comma": ({"tags": {"a,b": "x"}}, "etcd:tags.a,b", "a tag name of 1 to 128"),
    "tag key AWS:": ({"tags": {"AWS:cost": "x"}}, "etcd:tags.AWS:cost", "not starting with 'aws:'"),
    "tag key long": ({"tags": {"k" * 129: "x"}}, f"etcd:tags.{'k' * 129}", "1 to 128"),
    "tag key empty": ({"tags": {"": "x"}}, "etcd:tags.", "1 to 128"),
    "vpc id": ({"bastion": False, "vpcId": "vpc-12"}, "etcd:vpcId", "a VPC id"),
    "subnets without vpc": ({"privateSubnetIds": ["subnet-0a1b2c3d4e5f60718"]}, "etcd:privateSubnetIds",
                            "only with etcd:vpcId"),
    "member ips without vpc": ({"memberIps": ["10.0.0.10"]}, "etcd:memberIps", "only with etcd:vpcId"),
    "vpc without subnets": ({"bastion": False, "vpcId": "vpc-0a1b2c3d4e5f60718"}, "etcd:privateSubnetIds",
                            "at least 3 private subnets"),
    "two subnets": ({"bastion": False, "vpcId": "vpc-0a1b2c3d4e5f60718",
                     "privateSubnetIds": ["subnet-0a1b2c3d4e5f60718", "subnet-0b1c2d3e4f5a60719"]},
                    "etcd:privateSubnetIds", "at least 3 private subnets"),
    "subnet twice": ({"bastion": False, "vpcId": "vpc-0a1b2c3d4e5f60718",
                      "privateSubnetIds": ["subnet-0a1b2c3d4e5f60718"] * 3},
                     "etcd:privateSubnetIds", "each subnet once"),
    "subnet id": ({"privateSubnetIds": ["sn-1"]}, "etcd:privateSubnetIds", "a subnet id"),
    "member ip": ({"memberIps": ["10.0.0.300"]}, "etcd:memberIps", "an IPv4 address"),
    "member ip twice": ({"memberIps": ["10.0.0.10", "10.0.0.10"]}, "etcd:memberIps", "each address once"),
    "bastion in existing vpc": ({"vpcId": "vpc-0a1b2c3d4e5f60718", "privateSubnetIds": [
        "subnet-0a1b2c3d4e5f60718", "subnet-0b1c2d3e4f5a60719", "subnet-0c1d2e3f4a5b6071a"]},
        "etcd:bastion", "false with etcd:vpcId"),
    "vpc cidr in existing vpc": ({"bastion": False, "vpcCidr": "10.1.0.0/16", "vpcId": "vpc-0a1b2c3d4e5f60718",
                                  "privateSubnetIds": ["subnet-0a1b2c3d4e5f60718", "subnet-0b1c2d3e4f5a60719",
                                                       "subnet-0c1d2e3f4a5b6071a"]},
                                 "etcd:vpcCidr", "only without etcd:vpcId"),
    "member ips for another size": ({"bastion": False, "vpcId": "vpc-0a1b2c3d4e5f60718", "memberIps": ["10.50.0.10"],
                                     "privateSubnetIds": ["subnet-0a1b2c3d4e5f60718", "subnet-0b1c2d3e4f5a60719",
                                                          "subnet-0c1d2e3f4a5b6071a"]},
                                    "etcd:memberIps", "one address per member (3)"),
    "key generation zero": ({"keyGeneration": 0}, "etcd:keyGeneration", "from 1 to 1000"),
    "key generation word": ({"keyGeneration": "next"}, "etcd:keyGeneration", "whole number"),
    "defrag hourly": ({"defragSchedule": "hourly"}, "etcd:defragSchedule", "at most once a day"),
    "defrag hour 25": ({"defragSchedule": "Sun 25:00"}, "etcd:defragSchedule", "[weekdays] [*-*-DAY] HH:MM[:SS]"),
    "defrag unit injection": ({"defragSchedule": "Sun 03:00\nExecStartPre=/bin/sh"}, "etcd:defragSchedule",
                              "systemd's OnCalendar="),
    "quota tiny": ({"quotaBackendBytes": 1024}, "etcd:quotaBackendBytes", "from 16777216 to 8589934592"),
    "quota words": ({"quotaBackendBytes": "2GiB"}, "etcd:quotaBackendBytes", "whole number"),
    "quota over half the volume": ({"dataVolumeSize": 8, "quotaBackendBytes": 8 * 1024**3}, "etcd:quotaBackendBytes",
                                   "at most half of etcd:dataVolumeSize (4294967296 bytes)"),
}


@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_bad_values_fail_with_one_line_naming_key_value_and_what_is_allowed(raw_config, case):
    overrides, key, allowed = case
    with pytest.raises(ConfigError) as caught:
        load(raw_config(**overrides))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{key}: ")
    assert allowed in message
    assert caught.value.key == key


def test_the_error_shows_the_bad_value(raw_config):
    with pytest.raises(ConfigError, match=r"^etcd:clusterSize: '4' is not allowed: one of 1, 3, 5 or 7$"):
        load(raw_config(clusterSize=4))


def test_unknown_key_suggests_the_closest_known_key(raw_config):
    raw = raw_config()
    raw["etcd:clustersize"] = "3"
    with pytest.raises(ConfigError, match=r"^etcd:clustersize: .*did you mean etcd:clusterSize\?$"):
        load(raw)


def test_unknown_key_without_a_close_match_points_at_the_table(raw_config):
    raw = raw_config()
    raw["etcd:flavour"] = "vanilla"
    with pytest.raises(ConfigError, match=r"see the configuration table in README\.md"):
        load(raw)


def test_other_namespaces_are_not_ours_to_judge(raw_config):
    raw = raw_config()
    raw["aws:profile"] = "prod"
    assert load(raw).region == "eu-west-2"


def test_region_is_required(raw_config):
    with pytest.raises(ConfigError, match=r"^aws:region: .*pulumi config set aws:region"):
        load(raw_config(region=None))


def test_region_must_look_like_a_region(raw_config):
    with pytest.raises(ConfigError, match=r"^aws:region: 'London'"):
        load(raw_config(region="London"))


def test_private_key_material_is_refused_and_never_echoed(raw_config):
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    with pytest.raises(ConfigError) as caught:
        load(raw_config(sshPublicKey=pem))
    message = str(caught.value)
    assert message.startswith("etcd:sshPublicKey: '<private key material>'")
    assert "never a private key" in message
    assert pem.splitlines()[1][:20] not in message


def test_short_rsa_keys_are_refused(raw_config):
    weak = openssh_public(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    with pytest.raises(ConfigError, match="at least 2048 bits"):
        load(raw_config(sshPublicKey=weak))


def test_a_key_whose_body_disagrees_with_its_type_is_refused(raw_config, rsa_key):
    body = rsa_key.split()[1]
    with pytest.raises(ConfigError, match="matches its type"):
        load(raw_config(sshPublicKey=f"ssh-ed25519 {body}"))


def test_long_values_are_shortened_in_errors(raw_config):
    with pytest.raises(ConfigError) as caught:
        load(raw_config(discoveryEndpoint="ftp://" + "x" * 200))
    assert len(str(caught.value)) < 200


class TestStackFile:
    def test_scalars_lists_and_maps_become_pulumi_text(self):
        raw = config.from_stack_file({"config": {
            "aws:region": "eu-west-2", "etcd:clusterSize": 5, "etcd:bastion": False,
            "etcd:sshAllowedCidrs": ["198.51.100.7/32"], "etcd:tags": {"team": "platform"},
        }})
        assert raw == {
            "aws:region": "eu-west-2", "etcd:clusterSize": "5", "etcd:bastion": "false",
            "etcd:sshAllowedCidrs": '["198.51.100.7/32"]', "etcd:tags": '{"team": "platform"}',
        }

    def test_secure_values_cannot_be_rendered_offline(self):
        with pytest.raises(ConfigError, match=r"^etcd:sshPublicKey: '\[secret\]'.*cannot decrypt"):
            config.from_stack_file({"config": {"etcd:sshPublicKey": {"secure": "v1:abc"}}})

    def test_keys_need_a_namespace(self):
        with pytest.raises(ConfigError, match=r"^clusterSize: .*namespace:name"):
            config.from_stack_file({"config": {"clusterSize": 3}})

    def test_an_empty_file_has_no_config(self):
        assert config.from_stack_file(None) == {}


GOOD_TAGS = {"team": "platform", "cost centre": "42", "owner": "ops@example.org", "path": "a/b=c+d:e_f.g-h",
             "équipe": "plateforme", "empty": "", "k" * 128: "v" * 256}


def test_tags_iam_accepts_are_kept(raw_config):
    assert dict(load(raw_config(tags=GOOD_TAGS)).tags) == GOOD_TAGS


@pytest.mark.parametrize("name", ["internal", "sgx", "my-internal", "etcd-sg-1", "prod-internal"])
def test_cluster_names_aws_accepts_are_kept(raw_config, name):
    assert load(raw_config(clusterName=name)).cluster_name == name


@pytest.mark.parametrize("stack", ["dev", "prod-eu-1", "a", "x" * 63])
def test_stack_names_that_are_dns_labels_are_accepted(raw_config, stack):
    assert config.load(raw_config(), stack).stack == stack


@pytest.mark.parametrize("stack", ["Prod", "dev_eu", "dev.eu", "-dev", "dev-", "x" * 64])
def test_stack_names_that_cannot_name_a_dns_zone_are_refused(raw_config, stack):
    with pytest.raises(ConfigError, match=r"^stack: .* lowercase letters, digits and hyphens") as caught:
        config.load(raw_config(), stack)
    assert caught.value.key == "stack"


EXISTING = ["subnet-0a1b2c3d4e5f60718", "subnet-0b1c2d3e4f5a60719", "subnet-0c1d2e3f4a5b6071a"]


def existing(raw_config, **overrides):
    return load(raw_config(bastion=False, vpcId="vpc-0a1b2c3d4e5f60718", privateSubnetIds=EXISTING, **overrides))


def test_an_existing_vpc_is_read_with_its_subnets_and_member_addresses(raw_config):
    cfg = existing(raw_config, memberIps=["10.50.0.10", "10.50.16.10", "10.50.32.10"])
    assert cfg.vpc_id == "vpc-0a1b2c3d4e5f60718" and cfg.private_subnet_ids == tuple(EXISTING)
    assert cfg.member_ips == tuple(ipaddress.IPv4Address(a) for a in ("10.50.0.10", "10.50.16.10", "10.50.32.10"))


def facts(*rows):
    return [config.SubnetFacts(subnet_id, vpc, ipaddress.IPv4Network(cidr), zone)
            for subnet_id, vpc, cidr, zone in rows]


GOOD_SUBNETS = facts(("subnet-0a1b2c3d4e5f60718", "vpc-0a1b2c3d4e5f60718", "10.50.0.0/20", "eu-west-2a"),
                     ("subnet-0b1c2d3e4f5a60719", "vpc-0a1b2c3d4e5f60718", "10.50.16.0/20", "eu-west-2b"),
                     ("subnet-0c1d2e3f4a5b6071a", "vpc-0a1b2c3d4e5f60718", "10.50.32.0/24", "eu-west-2c"))


def test_subnets_of_the_vpc_in_three_zones_pass(raw_config):
    config.check_existing_network(existing(raw_config, memberIps=["10.50.0.4", "10.50.16.9", "10.50.32.254"]),
                                  (True, True), GOOD_SUBNETS)


@pytest.mark.parametrize("dns", [(False, True), (True, False)])
def test_a_vpc_without_dns_support_or_hostnames_is_refused(raw_config, dns):
    with pytest.raises(ConfigError, match=r"^etcd:vpcId: 'vpc-0a1b2c3d4e5f60718' is not allowed: a VPC with DNS"):
        config.check_existing_network(existing(raw_config), dns, GOOD_SUBNETS)


@pytest.mark.parametrize(("subnets", "ips", "key", "allowed"), [
    ([*GOOD_SUBNETS[:2], *facts(("subnet-0c1d2e3f4a5b6071a", "vpc-0b2c3d4e5f6071829", "172.31.0.0/20", "eu-west-2c"))],
     [], "etcd:privateSubnetIds", "subnets of etcd:vpcId vpc-0a1b2c3d4e5f60718; it is in vpc-0b2c3d4e5f6071829"),
    ([*GOOD_SUBNETS[:2], *facts(("subnet-0c1d2e3f4a5b6071a", "vpc-0a1b2c3d4e5f60718", "10.50.48.0/20", "eu-west-2a"))],
     [], "etcd:privateSubnetIds", "one subnet per availability zone"),
    (GOOD_SUBNETS, ["10.50.0.10", "10.50.16.10", "10.60.0.10"], "etcd:memberIps", "addresses inside"),
    (GOOD_SUBNETS, ["10.50.0.10", "10.50.16.10", "10.50.32.3"], "etcd:memberIps", "five AWS reserves"),
    (GOOD_SUBNETS, ["10.50.0.10", "10.50.16.10", "10.50.32.255"], "etcd:memberIps", "five AWS reserves"),
    (GOOD_SUBNETS, ["10.50.0.10", "10.50.0.11", "10.50.32.10"], "etcd:memberIps", "at most 1 members per zone"),
])
def test_what_the_ec2_api_says_about_the_subnets_is_checked_naming_the_key(raw_config, subnets, ips, key, allowed):
    with pytest.raises(ConfigError) as caught:
        config.check_existing_network(existing(raw_config, memberIps=ips or None), (True, True), subnets)
    assert caught.value.key == key and allowed in str(caught.value)


# --- etcd:defragSchedule against its consumer, systemd's calendar parser ------------------------

SCHEDULES_TAKEN = [config.DEFRAG_SCHEDULE, "weekly", "daily", "monthly", "Mon..Fri 02:15", "Sat,Sun 23:59:59",
                   "*-*-01 04:00", "Sun *-*-01..07 03:00"]
# Refused here and by systemd alike.
SCHEDULES_NOBODY_TAKES = ["Sun 25:00", "Funday 03:00", "03:60", "Sun 03:00:61", "*-*-32 03:00", "*-*-31..01 03:00",
                          "Sun 03:00\n", ""]
# systemd would run these; refused here because each run blocks every member in turn: at most once a day.
SCHEDULES_TOO_OFTEN = ["hourly", "minutely", "*:0/5", "*-*-* *:30:00"]


def systemd_calendar(text: str) -> bool:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: `make test` installs it"
    return subprocess.run([analyze, "calendar", text], capture_output=True, check=False).returncode == 0


@pytest.mark.parametrize("text", SCHEDULES_TAKEN)
def test_schedules_config_takes_are_ones_systemd_takes(raw_config, text):
    assert load(raw_config(defragSchedule=text)).defrag_schedule == text
    assert systemd_calendar(text)


@pytest.mark.parametrize("text", SCHEDULES_NOBODY_TAKES)
def test_schedules_systemd_refuses_config_refuses_first(raw_config, text):
    assert not systemd_calendar(text)
    with pytest.raises(ConfigError, match=r"^etcd:defragSchedule: .* is not allowed: daily, weekly, monthly"):
        load(raw_config(defragSchedule=text))


@pytest.mark.parametrize("text", SCHEDULES_TOO_OFTEN)
def test_schedules_more_often_than_daily_are_refused_though_systemd_takes_them(raw_config, text):
    assert systemd_calendar(text)
    with pytest.raises(ConfigError, match="at most once a day"):
        load(raw_config(defragSchedule=text))


def test_the_quota_is_unset_by_default_and_kept_when_set(raw_config):
    assert load(raw_config()).quota_backend_bytes is None
    assert load(raw_config(quotaBackendBytes=32 * 1024**2)).quota_backend_bytes == 32 * 1024**2
