"""Values as the mock monitor sees them: secrets arrive wrapped, and the inventory must not show them."""

from __future__ import annotations

from typing import Any

from pulumi.runtime import rpc

SECRET = "[secret]"


def redact(value: Any) -> Any:
    if rpc.is_rpc_secret(value):
        return SECRET
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def reveal(value: Any) -> Any:
    """The plain value, secrets unwrapped (tests look inside them)."""
    if rpc.is_rpc_secret(value):
        return reveal(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {key: reveal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [reveal(item) for item in value]
    return value
