from __future__ import annotations

import ipaddress

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from etcd_stack import config, releases
from etcd_stack.config import Bootstrap, ConfigError, EtcdVersion, NatStrategy, architecture
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
    refused = r"^etcd:version: '3\.6\.15' .*arm64 checksum is known: .*3\.6\.0 to 3\.6\.14, 3\.7\.1$"
    with pytest.raises(ConfigError, match=refused):
        load(raw_config(version="3.6.15", instanceType="m7g.large"))


def test_a_premade_discovery_url_is_kept(raw_config):
    url = "https://discovery.example.org/3e86b59982e49066c5d813af1c2e2579cbf573de"
    assert load(raw_config(discoveryUrl=url)).discovery_url == url


def test_a_self_hosted_discovery_endpoint_loses_its_trailing_slash(raw_config):
    assert load(raw_config(discoveryEndpoint="http://127.0.0.1:2379/v2/")).discovery_endpoint == (
        "http://127.0.0.1:2379/v2"
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
    "endpoint scheme": ({"discoveryEndpoint": "ftp://discovery.etcd.io"}, "etcd:discoveryEndpoint", "http(s) URL"),
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
    "ssh world v4": ({"sshAllowedCidrs": ["0.0.0.0/0"]}, "etcd:sshAllowedCidrs", "narrower than the whole internet"),
    "ssh world v6": ({"sshAllowedCidrs": ["198.51.100.7/32", "::/0"]}, "etcd:sshAllowedCidrs",
                     "narrower than the whole internet"),
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
