from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from etcd_stack.member.rendering import decompress
from etcd_stack.preview import offline
from etcd_stack.preview.wire import reveal

ROOT = offline.PROJECT_DIR


def etcd_stack(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "etcd_stack.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's program beside stack files the test writes."""
    directory = tmp_path / "project"
    directory.mkdir()
    shutil.copy(ROOT / "__main__.py", directory / "__main__.py")
    return directory


@pytest.fixture(scope="module")
def dev_render(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("render") / "out"
    return etcd_stack("render", "--stack", "dev", "--out", str(out)), out


def test_render_of_the_dev_stack_writes_the_inventory(dev_render):
    result, out = dev_render
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    inventory = json.loads((out / "inventory.json").read_text())
    assert result.stdout.startswith(f"dev: {len(inventory)} resources in eu-west-2 -> ")
    assert len(inventory) > 40
    names = {entry["name"] for entry in inventory}
    for entry in inventory:
        assert set(entry) == {"type", "name", "parent", "inputs", "dependencies"}
        assert entry["parent"] is None or entry["parent"] in names
        assert all(dependency["name"] in names for dependency in entry["dependencies"])
    vpc = next(e for e in inventory if e["type"] == "aws:ec2/vpc:Vpc")
    assert vpc["inputs"]["cidrBlock"] == "10.0.0.0/16" and vpc["parent"] == "etcd"


def test_the_dev_stack_has_three_nat_gateways_and_no_bastion(dev_render):
    _, out = dev_render
    inventory = json.loads((out / "inventory.json").read_text())
    types = [entry["type"] for entry in inventory]
    assert types.count("aws:ec2/natGateway:NatGateway") == 3
    assert "etcd-aws:access:Bastion" not in types


def test_two_renders_of_the_same_stack_are_identical(dev_render, tmp_path):
    _, out = dev_render
    again = etcd_stack("render", "--stack", "dev", "--out", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    written = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file())
    for path in written:
        assert (tmp_path / "again" / path).read_bytes() == (out / path).read_bytes(), path


def test_render_writes_each_member_exact_user_data(dev_render):
    import yaml

    result, out = dev_render
    inventory = json.loads((out / "inventory.json").read_text())
    instances = {e["inputs"]["tags"]["etcd-member"]: e for e in inventory if e["type"] == "aws:ec2/instance:Instance"}
    assert sorted(p.name for p in (out / "members").iterdir()) == ["etcd-0", "etcd-1", "etcd-2"]
    for member, entry in instances.items():
        user_data = (out / "members" / member / "user-data").read_text()
        assert user_data == decompress(entry["inputs"]["userDataBase64"])
        assert user_data.startswith("#cloud-config\n")
        assert yaml.safe_load(user_data)["write_files"][0]["path"] == "/etc/etcd/etcd.yaml"
    assert f"3 members' user_data -> {out / 'members'}/<member>/user-data" in result.stdout


BAD_FILES = {
    "even size": ("config:\n  aws:region: eu-west-2\n  etcd:clusterSize: 4\n", "etcd:clusterSize: '4'"),
    "misspelt key": ("config:\n  aws:region: eu-west-2\n  etcd:bastoin: false\n", "did you mean etcd:bastion?"),
    "world ssh": ("config:\n  aws:region: eu-west-2\n  etcd:sshAllowedCidrs: ['0.0.0.0/0']\n",
                  "etcd:sshAllowedCidrs: '0.0.0.0/0'"),
    "no region": ("config:\n  etcd:bastion: false\n", "aws:region"),
    "secure value": ("config:\n  aws:region: eu-west-2\n  etcd:sshPublicKey:\n    secure: v1:abc\n",
                     "cannot decrypt"),
    "broken yaml": ("config:\n  aws:region: [eu-west-2\n", "not valid YAML"),
    "not a map": ("- just\n- a list\n", "expected a YAML map"),
}


@pytest.mark.parametrize("case", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_config_exits_2_with_one_line_and_writes_nothing(project, case):
    text, expected = case
    (project / "Pulumi.bad.yaml").write_text(text)
    out = project / "out"
    result = etcd_stack("render", "--stack", "bad", "--out", str(out), "--project-dir", str(project))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("etcd-stack render: ")
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_a_missing_stack_file_is_named(project):
    result = etcd_stack("render", "--stack", "prod", "--out", str(project / "out"), "--project-dir", str(project))
    assert result.returncode == 2
    assert result.stderr.strip() == f"etcd-stack render: --stack: 'prod' has no Pulumi.prod.yaml in {project}"


def test_secret_inputs_are_masked_in_the_inventory(tmp_path, raw_config):
    program = tmp_path / "program.py"
    program.write_text(
        "import pulumi, pulumi_aws as aws\n"
        "aws.ssm.Parameter('p', type='SecureString', value=pulumi.Output.secret('hunter2'), tags={'a': 'b'})\n"
    )
    run = offline.run(raw_config(), "test", program=program)
    (parameter,) = run.resources
    assert parameter.public()["inputs"] == {"type": "SecureString", "value": "[secret]", "tags": {"a": "b"}}
    assert reveal(parameter.inputs)["value"] == "hunter2"
    assert "hunter2" not in json.dumps(parameter.public())


@pytest.fixture(scope="module")
def sydney():
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from tests.conftest import encode, openssh_public

    raw = {"aws:region": "ap-southeast-2", "etcd:natStrategy": "one-per-az",
           "etcd:sshAllowedCidrs": encode(["198.51.100.7/32"]),
           "etcd:sshPublicKey": openssh_public(ed25519.Ed25519PrivateKey.generate())}
    return offline.run(raw, "test")


class TestMocksAreRealistic:
    @pytest.fixture
    def run(self, sydney):
        return sydney

    def test_availability_zones_belong_to_the_configured_region(self, run):
        zones = {s.inputs["availabilityZone"] for s in run.of_type("aws:ec2/subnet:Subnet")}
        assert zones == {"ap-southeast-2a", "ap-southeast-2b", "ap-southeast-2c"}

    def test_private_addresses_fall_inside_their_subnet(self, run):
        placed = (run.of_type("aws:ec2/natGateway:NatGateway") + run.of_type("aws:ec2/instance:Instance")
                  + run.of_type("aws:ec2/networkInterface:NetworkInterface"))
        placed = [resource for resource in placed if "subnetId" in resource.inputs]
        assert len(placed) == 3 + 1 + 3  # NAT gateways, the bastion, the members' interfaces
        for resource in placed:
            subnet = ipaddress.ip_network(run.by_id(resource.inputs["subnetId"]).inputs["cidrBlock"])
            assert ipaddress.ip_address(resource.state["privateIp"]) in subnet

    def test_public_addresses_come_from_a_documentation_range(self, run):
        for eip in run.of_type("aws:ec2/eip:Eip"):
            assert ipaddress.ip_address(eip.state["publicIp"]) in ipaddress.ip_network("203.0.113.0/24")

    def test_arns_name_the_region_and_account(self, run):
        vpc = run.of_type("aws:ec2/vpc:Vpc")[0]
        assert vpc.state["arn"] == f"arn:aws:ec2:ap-southeast-2:123456789012:vpc/{vpc.id}"
        assert vpc.id.startswith("vpc-") and len(vpc.id) == len("vpc-") + 17


def test_each_inventory_row_lists_what_it_waits_for_explicitly_and_through_inputs(dev_render):
    _, out = dev_render
    rows = {(row["type"], row["name"]): row for row in json.loads((out / "inventory.json").read_text())}
    instance = rows[("aws:ec2/instance:Instance", "etcd-etcd-0")]
    waits = {(dep["type"], dep["name"]) for dep in instance["dependencies"]}
    # Through its inputs: the interface and the instance profile; explicitly: the read grant and its gate.
    assert {("aws:ec2/networkInterface:NetworkInterface", "etcd-etcd-0"),
            ("aws:iam/instanceProfile:InstanceProfile", "etcd-access-0"),
            ("aws:iam/rolePolicy:RolePolicy", "etcd-etcd-0-read-tls"),
            ("pulumi-python:dynamic:Resource", "etcd-etcd-0-before")} <= waits
    assert instance["parent"] == "etcd-etcd"
    # The gate waits for the cluster record, through the input that says whether the cluster runs.
    gate = rows[("pulumi-python:dynamic:Resource", "etcd-etcd-0-before")]
    assert {"type": "pulumi-python:dynamic:Resource", "name": "etcd-version"} in gate["dependencies"]
    assert rows[("aws:ec2/vpc:Vpc", "etcd-vpc")]["dependencies"] == []
