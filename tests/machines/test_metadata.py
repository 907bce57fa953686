"""The instance metadata stand-in, asked from inside a network namespace the way a machine's AWS CLI asks it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from etcd_stack.sandbox.machines import metadata

IDENTITY = metadata.Identity(instance_id="i-0abc1234def567890", region="eu-west-2", availability_zone="eu-west-2b",
                             private_ip="10.0.64.10", hostname="ip-10-0-64-10.eu-west-2.compute.internal",
                             role_name="etcd-dev-member", account_id="210987654321")


def namespace(suffix: str) -> Iterator[str]:
    name = f"etcd-test-md-{os.getpid()}-{suffix}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.fixture(scope="module")
def credentials() -> metadata.Credentials:
    return metadata.Credentials.fresh()


@pytest.fixture(scope="module")
def server(credentials: metadata.Credentials, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        metadata.MetadataServer]:
    for netns in namespace("shared"):
        running = metadata.start(netns, IDENTITY, credentials, tmp_path_factory.mktemp("imds"))
        try:
            yield running
        finally:
            running.stop()


def inside(netns: str, code: str) -> dict:
    """Runs Python in the namespace with no AWS settings in its environment (so only IMDS can answer)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent"
    result = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", code], capture_output=True,
                            text=True, timeout=120, env=env, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_boto3_in_the_namespace_gets_the_roles_credentials_and_the_region(
        server: metadata.MetadataServer, credentials: metadata.Credentials) -> None:
    found = inside(server.netns, """
import json, boto3
from botocore.utils import InstanceMetadataRegionFetcher
session = boto3.Session()
creds = session.get_credentials()
frozen = creds.get_frozen_credentials()
print(json.dumps({"method": creds.method, "key": frozen.access_key, "secret": frozen.secret_key,
                  "token": frozen.token, "region": InstanceMetadataRegionFetcher().retrieve_region()}))
""")
    assert found == {"method": "iam-role", "key": credentials.access_key_id, "secret": credentials.secret_access_key,
                     "token": credentials.token, "region": IDENTITY.region}


def test_identity_document_and_role_listing_carry_the_instance(server: metadata.MetadataServer) -> None:
    found = inside(server.netns, f"""
import json, urllib.request
base = {server.url!r}
token = urllib.request.urlopen(urllib.request.Request(base + "/latest/api/token", method="PUT",
    headers={{"X-aws-ec2-metadata-token-ttl-seconds": "60"}}), timeout=5).read().decode()
def get(path):
    request = urllib.request.Request(base + path, headers={{"X-aws-ec2-metadata-token": token}})
    return urllib.request.urlopen(request, timeout=5).read().decode()
print(json.dumps({{"document": json.loads(get("/latest/dynamic/instance-identity/document")),
                  "roles": get("/latest/meta-data/iam/security-credentials/"),
                  "ip": get("/latest/meta-data/local-ipv4"), "az": get("/latest/meta-data/placement/availability-zone"),
                  "hostname": get("/latest/meta-data/local-hostname")}}))
""")
    document = found["document"]
    assert (document["instanceId"], document["region"], document["accountId"], document["privateIp"]) == (
        IDENTITY.instance_id, IDENTITY.region, IDENTITY.account_id, IDENTITY.private_ip)
    assert found["roles"].split() == [IDENTITY.role_name]
    assert (found["ip"], found["az"], found["hostname"]) == (IDENTITY.private_ip, IDENTITY.availability_zone,
                                                             IDENTITY.hostname)


def test_imdsv1_requests_are_refused_as_with_tokens_required(server: metadata.MetadataServer) -> None:
    """The launch templates set http_tokens=required: a GET with no token, or a made-up one, is 401."""
    found = inside(server.netns, f"""
import json, urllib.error, urllib.request
codes = []
for headers in ({{}}, {{"X-aws-ec2-metadata-token": "not-a-token"}}):
    try:
        urllib.request.urlopen(urllib.request.Request({server.url!r} + "/latest/meta-data/instance-id",
                                                      headers=headers), timeout=5)
        codes.append(200)
    except urllib.error.HTTPError as error:
        codes.append(error.code)
print(json.dumps(codes))
""")
    assert found == [401, 401]


def test_twenty_concurrent_clients_all_get_tokens_and_answers(server: metadata.MetadataServer) -> None:
    """AEMM's token map is not safe for concurrent writes; HAProxy's single backend slot serialises them."""
    found = inside(server.netns, f"""
import json, urllib.request
from concurrent.futures import ThreadPoolExecutor
base = {server.url!r}
def client(_):
    token = urllib.request.urlopen(urllib.request.Request(base + "/latest/api/token", method="PUT",
        headers={{"X-aws-ec2-metadata-token-ttl-seconds": "60"}}), timeout=30).read().decode()
    request = urllib.request.Request(base + "/latest/meta-data/instance-id",
                                     headers={{"X-aws-ec2-metadata-token": token}})
    return urllib.request.urlopen(request, timeout=30).read().decode()
with ThreadPoolExecutor(20) as pool:
    print(json.dumps(list(pool.map(client, range(20)))))
""")
    assert found == [IDENTITY.instance_id] * 20
    assert all(process.poll() is None for process in server.processes)


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_stop_leaves_no_process_and_can_be_repeated(credentials: metadata.Credentials, tmp_path: Path) -> None:
    for netns in namespace("stop"):
        server = metadata.start(netns, IDENTITY, credentials, tmp_path)
        pids = server.pids
        assert len(pids) == 2 and all(running(pid) for pid in pids)
        assert (tmp_path / metadata.PID_FILE).read_text().split() == [str(pid) for pid in pids]
        server.stop()
        server.stop()
        assert not any(running(pid) for pid in pids)
        assert not (tmp_path / metadata.PID_FILE).exists()


def test_another_process_stops_the_servers_from_the_pid_file(credentials: metadata.Credentials,
                                                             tmp_path: Path) -> None:
    for netns in namespace("pidfile"):
        server = metadata.start(netns, IDENTITY, credentials, tmp_path)
        try:
            subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                            "from etcd_stack.sandbox.machines import metadata; metadata.stop_from(Path(sys.argv[1]))",
                            str(tmp_path / metadata.PID_FILE)], check=True, timeout=60)
            assert all(process.wait(timeout=10) is not None for process in server.processes)
            assert not (tmp_path / metadata.PID_FILE).exists()
        finally:
            server.stop()


def test_a_taken_address_fails_the_start_before_anything_runs(
        server: metadata.MetadataServer, credentials: metadata.Credentials, tmp_path: Path) -> None:
    """A second stand-in in the same namespace finds the address taken, and is not fooled by the first one
    answering its readiness probe."""
    with pytest.raises(RuntimeError, match=r"169\.254\.169\.254:80 is in use"):
        metadata.start(server.netns, IDENTITY, credentials, tmp_path, free_wait_s=1.0)
    assert not (tmp_path / metadata.PID_FILE).exists()
    assert all(process.poll() is None for process in server.processes)


def test_a_server_dying_at_start_raises_with_its_log_and_leaves_nothing_running(
        credentials: metadata.Credentials, tmp_path: Path) -> None:
    """A broken AEMM build (a binary that exits at once): HAProxy, already started, is ended too."""
    broken = metadata.binary_path(tmp_path / "cache")
    broken.parent.mkdir(parents=True)
    broken.write_text("#!/bin/sh\necho 'flag provided but not defined' >&2\nexit 3\n")
    broken.chmod(0o755)
    home = tmp_path / "home"
    for netns in namespace("broken"):
        with pytest.raises(RuntimeError, match=r"(?s)aemm exited with 3 .*flag provided but not defined"):
            metadata.start(netns, IDENTITY, credentials, home, cache=tmp_path / "cache")
    leftovers = [pid for pid in os.listdir("/proc") if pid.isdigit() and running(int(pid))
                 and str(home).encode() in _cmdline(pid)]
    assert leftovers == []
    assert not (home / metadata.PID_FILE).exists()


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""
