from __future__ import annotations

import ctypes
import json
import os
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from etcd_stack.preview import offline

CLONE_NEWNET = 0x40000000


def pytest_configure(config: pytest.Config) -> None:
    """The whole session runs in a network namespace of its own (with only `lo`), made before any thread
    exists so every test thread and child inherits it: clusters, machines and stand-ins bind their fixed
    addresses there and cannot collide with parallel work on this machine, nor reach anything outside."""
    if os.environ.get("ETCD_STACK_TEST_NETNS") == str(os.getpid()):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise pytest.UsageError(f"the tests need a private network namespace: unshare(CLONE_NEWNET): "
                                f"{os.strerror(error)} (run them as root, as `make test` does)")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    os.environ["ETCD_STACK_TEST_NETNS"] = str(os.getpid())


def openssh_public(key: Any) -> str:
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


@pytest.fixture(scope="session")
def ssh_key() -> str:
    return openssh_public(ed25519.Ed25519PrivateKey.generate()) + " operator@laptop"


@pytest.fixture(scope="session")
def rsa_key() -> str:
    return openssh_public(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def encode(value: Any) -> str:
    """A value as Pulumi hands it to a program: text, with lists and maps as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


@pytest.fixture
def raw_config(ssh_key: str) -> Callable[..., dict[str, str]]:
    """A valid stack config with a bastion; keyword arguments (etcd key names) override or, as None, remove."""

    def build(region: str = "eu-west-2", **overrides: Any) -> dict[str, str]:
        values: dict[str, Any] = {
            "bastion": True,
            "sshAllowedCidrs": ["198.51.100.7/32", "2001:db8::/48"],
            "sshPublicKey": ssh_key,
        }
        values.update(overrides)
        raw = {f"etcd:{key}": encode(value) for key, value in values.items() if value is not None}
        if region is not None:
            raw["aws:region"] = region
        return raw

    return build


@pytest.fixture
def run_stack(raw_config: Callable[..., dict[str, str]]) -> Callable[..., offline.OfflineRun]:
    def run(**overrides: Any) -> offline.OfflineRun:
        return offline.run(raw_config(**overrides), "test")

    return run


# Stacks whose members the real-tool tests check: both bootstrap modes, both CPUs, three etcd lines.
VARIANTS = {
    "static-3.6-amd64": {"bootstrap": "static"},
    "discovery-3.6-5-members": {"clusterSize": 5},
    "static-3.5-arm64": {"bootstrap": "static", "version": "3.5.27", "instanceType": "m7g.large"},
    "discovery-3.4": {"version": "3.4.27"},
}


@pytest.fixture(scope="session")
def rendered_members() -> dict[str, str]:
    """`variant/member` -> that member's exact user_data, from the program run under the mocks."""
    found = {}
    for variant, overrides in VARIANTS.items():
        raw = {"aws:region": "eu-west-2", "etcd:bastion": "false"}
        raw.update({f"etcd:{key}": encode(value) for key, value in overrides.items()})
        run = offline.run(raw, "test")
        for instance in run.of_type("aws:ec2/instance:Instance"):
            member = instance.inputs["tags"].get("etcd-member")
            if member:
                found[f"{variant}/{member}"] = user_data_of(instance)
    return found


def user_data_of(instance) -> str:
    """The #cloud-config text an instance boots with (EC2 gets it gzip-compressed and base64-encoded)."""
    from etcd_stack.member.rendering import decompress

    return decompress(instance.inputs["userDataBase64"])


def written_file(user_data: str, path: str) -> str:
    import yaml

    (content,) = [f["content"] for f in yaml.safe_load(user_data)["write_files"] if f["path"] == path]
    return content
