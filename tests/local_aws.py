"""A local AWS double for the scripts members run: moto's server on 127.0.0.1, and the environment
that points the AWS CLI (the venv's, generated from the same service models as the CLI v2) at it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

REGION = "eu-west-2"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def cli_environment(endpoint: str, home: Path, path_first: Path | None = None) -> dict[str, str]:
    """os.environ with the CLI on PATH, talking to `endpoint` with test credentials and no user config."""
    path = os.pathsep.join(str(p) for p in (path_first, Path(sys.executable).parent) if p)
    return {
        **os.environ, "PATH": f"{path}{os.pathsep}{os.environ['PATH']}", "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
        "AWS_CONFIG_FILE": str(home / "no-config"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-credentials"),
    }
