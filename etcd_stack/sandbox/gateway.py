"""A small etcd v3 client over the JSON gRPC gateway (HTTPS with the operator's certificate).

Enough for the sandbox's status and its scenario tests: put, get, range, status, member list,
and the load balancer's view of health (`/health` on the plain-HTTP metrics port).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import requests

from etcd_stack.member.rendering import CLIENT_PORT, METRICS_PORT


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _text(value: str) -> str:
    return base64.b64decode(value).decode()


def prefix_end(prefix: str) -> str:
    """The key just past every key that starts with `prefix` (etcd's range_end for a prefix)."""
    raw = prefix.encode()
    return (raw[:-1] + bytes([raw[-1] + 1])).decode()


@dataclass(frozen=True)
class Health:
    status_code: int
    healthy: bool
    reason: str


def local_session() -> requests.Session:
    """For loopback only: no proxies and no CA bundle from the environment."""
    session = requests.Session()
    session.trust_env = False
    return session


def health(ip: str, timeout: float = 2.0) -> Health:
    """What the load balancer's health check sees: no client certificate needed. No answer in time, or
    no listener, is unhealthy too (status 0)."""
    try:
        with local_session() as session:
            response = session.get(f"http://{ip}:{METRICS_PORT}/health", timeout=timeout)
    except requests.Timeout:
        return Health(0, False, f"no answer within {timeout:g}s")
    except requests.ConnectionError:
        return Health(0, False, "not listening")
    try:
        body = response.json()
    except ValueError:
        body = {}
    return Health(response.status_code, body.get("health") == "true", body.get("reason", ""))


class Gateway:
    def __init__(self, ca: str | None, cert: str | None, key: str | None, timeout: float = 5.0):
        """With a CA, certificate and key: HTTPS with a client certificate. Without: plain HTTP (a bare etcd)."""
        self._session = local_session()
        self._scheme = "https" if ca else "http"
        if ca:
            self._session.verify = ca
            self._session.cert = (cert, key)
        self._timeout = timeout

    def close(self) -> None:
        self._session.close()

    def call(self, ip: str, path: str, body: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        response = self._session.post(f"{self._scheme}://{ip}:{CLIENT_PORT}/v3/{path}", json=body,
                                      timeout=timeout or self._timeout)
        answer = response.json() if response.content else {}
        if response.status_code != 200 or "error" in answer:
            raise GatewayError(f"{path} on {ip}: HTTP {response.status_code} {answer.get('message', '')}".strip())
        return answer

    def put(self, ip: str, key: str, value: str, timeout: float | None = None) -> int:
        """Returns the revision the write was committed at."""
        answer = self.call(ip, "kv/put", {"key": _b64(key), "value": _b64(value)}, timeout)
        return int(answer["header"]["revision"])

    def get(self, ip: str, key: str) -> str | None:
        answer = self.call(ip, "kv/range", {"key": _b64(key)})
        found = answer.get("kvs", [])
        return _text(found[0]["value"]) if found else None

    def range_prefix(self, ip: str, prefix: str, serializable: bool = False) -> dict[str, str]:
        """Every key under the prefix; serializable reads what this member has, without asking the leader."""
        body = {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)), "serializable": serializable}
        answer = self.call(ip, "kv/range", body)
        return {_text(kv["key"]): _text(kv.get("value", "")) for kv in answer.get("kvs", [])}

    def status(self, ip: str) -> dict[str, Any]:
        answer = self.call(ip, "maintenance/status", {})
        return {"member_id": answer["header"]["member_id"], "leader": answer.get("leader", "0"),
                "raft_term": int(answer.get("raftTerm", answer["header"].get("raft_term", 0))),
                "version": answer.get("version", "")}

    def members(self, ip: str) -> dict[str, str]:
        """Member id -> name."""
        answer = self.call(ip, "cluster/member/list", {})
        return {member["ID"]: member.get("name", "") for member in answer.get("members", [])}


class GatewayError(Exception):
    pass
