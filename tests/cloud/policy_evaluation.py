"""Policies evaluated as IAM does (policy evaluation logic, condition operators): a request is refused
when any Deny statement matches its action, resource and every condition, and allowed by an identity
policy when an Allow statement matches and no Deny does. Covers the operators the stack uses."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Request:
    principal_arn: str
    action: str
    resource: str
    # Condition keys as the service sets them; a key absent here is absent from the request.
    context: Mapping[str, str] = field(default_factory=dict)

    def keys(self) -> dict[str, str]:
        return {"aws:PrincipalArn": self.principal_arn, "aws:SecureTransport": "true", **self.context}


def _listed(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else [value]


def _matches(patterns: str | list[str], value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in _listed(patterns))


def _condition(operator: str, key: str, expected: list[str], keys: Mapping[str, str]) -> bool:
    present = key in keys
    actual = keys.get(key, "")
    if operator == "Null":
        return (not present) == (expected[0] == "true")
    if operator == "Bool":
        return present and actual.lower() == expected[0]
    if operator in ("StringEquals", "ArnEquals"):
        return present and actual in expected
    if operator in ("StringLike", "ArnLike"):
        return present and _matches(expected, actual)
    # Negated operators are true for a request without the key.
    if operator == "ArnNotEquals":
        return not present or actual not in expected
    if operator == "ArnNotLike":
        return not present or not _matches(expected, actual)
    raise ValueError(f"operator {operator} is not modelled")


def _applies(statement: Mapping[str, Any], request: Request) -> bool:
    if statement.get("Principal", "*") != "*":
        raise ValueError("only statements for every principal (or identity policies) are modelled")
    if not _matches(statement["Action"], request.action) or not _matches(statement["Resource"], request.resource):
        return False
    keys = request.keys()
    return all(_condition(operator, key, _listed(values), keys)
               for operator, pairs in statement.get("Condition", {}).items() for key, values in pairs.items())


def denied_by(policy_json: str, request: Request) -> list[str]:
    """The Sids of the Deny statements that refuse the request."""
    statements = json.loads(policy_json)["Statement"]
    return [s.get("Sid", "") for s in statements if s["Effect"] == "Deny" and _applies(s, request)]


def allowed_by(policy_json: str, request: Request) -> bool:
    """An identity policy's answer: some Allow matches and no Deny does."""
    statements = json.loads(policy_json)["Statement"]
    return (any(s["Effect"] == "Allow" and _applies(s, request) for s in statements)
            and not denied_by(policy_json, request))
