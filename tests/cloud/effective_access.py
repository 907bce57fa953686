"""What AWS would allow: IAM's policy evaluation logic over the stack as rendered, for one account.

The order is IAM's (IAM user guide, "Policy evaluation logic"): an explicit deny in any applicable
policy wins; then, for KMS, the key policy decides (it grants directly, or delegates to IAM policies
by naming the account; KMS developer guide, "Key policies"); for other services in the same account,
an allow in either an identity policy or the resource's policy suffices; otherwise the implicit deny.
Identity policies are the role's inline policies and the documented JSON of each AWS managed policy
attached to it (tests/data/aws-policies, with their source). Condition operators the stack does not use
are refused rather than guessed.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1] / "data" / "aws-policies"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
PARAMETER = "aws:ssm/parameter:Parameter"
KEY = "aws:kms/key:Key"
BUCKET = "aws:s3/bucket:Bucket"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
# The S3 request steps of a multipart upload and of a read, each with the KMS call S3 makes for it on the
# caller's behalf under SSE-KMS: GenerateDataKey to start an upload, Decrypt for its parts and to complete it
# (S3 API reference, CreateMultipartUpload and UploadPart, Permissions), Decrypt to read (GetObject).
# All three upload steps are s3:PutObject to IAM; only the completion creates the object (s3:ObjectCreationOperation).
PART = {"s3:ObjectCreationOperation": "false"}
UPLOAD_STEPS = (("s3:PutObject", PART, "kms:GenerateDataKey"), ("s3:PutObject", PART, "kms:Decrypt"),
                ("s3:PutObject", {"s3:ObjectCreationOperation": "true", "s3:if-none-match": "*"}, "kms:Decrypt"))
READ_STEPS = (("s3:GetObject", {}, "kms:Decrypt"),)


def vendored(name: str, **fill: str) -> dict[str, Any]:
    """A vendored AWS policy document; placeholders (ACCOUNT, REGION) filled in."""
    text = json.dumps(json.loads((DATA / f"{name}.json").read_text())["document"])
    for placeholder, value in fill.items():
        text = text.replace(placeholder, value)
    return json.loads(text)


def managed_policies() -> dict[str, dict[str, Any]]:
    found = {}
    for path in DATA.glob("*.json"):
        entry = json.loads(path.read_text())
        if entry["arn"].startswith("arn:aws:iam::aws:policy/"):
            found[entry["arn"]] = entry["document"]
    return found


@dataclass(frozen=True)
class Principal:
    arn: str  # for a role session, aws:PrincipalArn is the role's ARN
    account: str
    policies: tuple[Mapping[str, Any], ...] = ()

    def with_policies(self, *documents: Mapping[str, Any]) -> Principal:
        return Principal(self.arn, self.account, (*self.policies, *documents))

    @staticmethod
    def of(arn: str, *documents: Mapping[str, Any]) -> Principal:
        """A principal known by its ARN (the account read from it), with these identity policies."""
        return Principal(arn, arn.split(":")[4], documents)


@dataclass(frozen=True)
class Request:
    principal: Principal
    action: str
    resource: str
    context: Mapping[str, Any] = field(default_factory=dict)

    def keys(self) -> dict[str, Any]:
        """The request context, with the keys AWS adds to every request."""
        found = {"aws:principalarn": self.principal.arn, "aws:principalaccount": self.principal.account}
        found.update({key.lower(): value for key, value in self.context.items()})
        return found


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    statements = document.get("Statement", [])
    return [statements] if isinstance(statements, Mapping) else list(statements)


def _matches_action(statement: Mapping[str, Any], action: str) -> bool:
    def hit(patterns: Any) -> bool:
        return any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in _listed(patterns))

    return hit(statement["Action"]) if "Action" in statement else not hit(statement["NotAction"])


def _matches_resource(statement: Mapping[str, Any], resource: str) -> bool:
    def hit(patterns: Any) -> bool:
        return any(fnmatch.fnmatchcase(resource, p) for p in _listed(patterns))

    return hit(statement["Resource"]) if "Resource" in statement else not hit(statement["NotResource"])


def _account_root(account: str) -> str:
    return f"arn:aws:iam::{account}:root"


def _principal_match(statement: Mapping[str, Any], principal: Principal) -> str | None:
    """'direct' when the statement names this principal (or everyone), 'account' when it names the
    principal's account (which delegates to IAM policies), None otherwise."""
    named = statement.get("Principal")
    if named == "*":
        return "direct"
    aws = _listed((named or {}).get("AWS"))
    if "*" in aws or principal.arn in aws:
        return "direct"
    if _account_root(principal.account) in aws or principal.account in aws:
        return "account"
    return None


_POSITIVE = {
    "StringEquals": lambda actual, wanted: actual == wanted,
    "StringEqualsIgnoreCase": lambda actual, wanted: actual.lower() == wanted.lower(),
    "StringLike": lambda actual, wanted: fnmatch.fnmatchcase(actual, wanted),
    "ArnEquals": lambda actual, wanted: actual == wanted,
    "ArnLike": lambda actual, wanted: fnmatch.fnmatchcase(actual, wanted),
    "Bool": lambda actual, wanted: str(actual).lower() == str(wanted).lower(),
}
_NEGATED = {"StringNotEquals": "StringEquals", "StringNotLike": "StringLike", "ArnNotEquals": "ArnEquals",
            "ArnNotLike": "ArnLike"}


def _condition_holds(operator: str, key: str, wanted: Any, context: Mapping[str, Any]) -> bool:
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    present = key.lower() in context
    if base == "Null":
        return (not present) == (str(_listed(wanted)[0]).lower() == "true")
    if not present:
        # A key missing from the request: no match, except for negated operators and IfExists.
        return if_exists or base in _NEGATED
    actual = context[key.lower()]
    values = _listed(actual)
    if base in _NEGATED:
        test = _POSITIVE[_NEGATED[base]]
        return not any(test(str(v), str(w)) for v in values for w in _listed(wanted))
    if base not in _POSITIVE:
        raise NotImplementedError(f"condition operator {operator} is not modelled")
    return any(_POSITIVE[base](str(v), str(w)) for v in values for w in _listed(wanted))


def _conditions_hold(statement: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    return all(_condition_holds(operator, key, wanted, context)
               for operator, block in (statement.get("Condition") or {}).items()
               for key, wanted in block.items())


def _applies(statement: Mapping[str, Any], request: Request) -> bool:
    return (_matches_action(statement, request.action) and _matches_resource(statement, request.resource)
            and _conditions_hold(statement, request.keys()))


def _effects(documents: Iterable[Mapping[str, Any]], request: Request) -> set[str]:
    return {s["Effect"] for d in documents for s in _statements(d) if _applies(s, request)}


def refused_by(request: Request, resource_policy: Mapping[str, Any]) -> list[str]:
    """The Sids of the resource policy's Deny statements that apply to the request (each alone refuses it)."""
    return [statement.get("Sid", "") for statement in _statements(resource_policy)
            if statement["Effect"] == "Deny" and _principal_match(statement, request.principal) is not None
            and _applies(statement, request)]


def allowed(request: Request, resource_policy: Mapping[str, Any] | None = None, kms: bool = False) -> bool:
    """Whether AWS allows the request (same-account principal; no SCPs, boundaries or session policies)."""
    identity = _effects(request.principal.policies, request)
    granted: set[str] = set()  # how the resource policy allows: "direct" or through "account"
    if resource_policy is not None:
        if refused_by(request, resource_policy):
            return False
        granted = {how for statement in _statements(resource_policy) if statement["Effect"] == "Allow"
                   and (how := _principal_match(statement, request.principal)) is not None
                   and _applies(statement, request)}
    if "Deny" in identity:
        return False
    if kms:
        # Without the key policy nothing is allowed; naming the account lets IAM policies decide.
        return "direct" in granted or ("account" in granted and "Allow" in identity)
    return bool(granted) or "Allow" in identity


# --- the rendered stack as principals and secrets -------------------------------------------------------

@dataclass(frozen=True)
class Secret:
    name: str
    arn: str
    key_arn: str | None  # None: the account's aws/ssm key


class StackAccess:
    """The rendered stack's roles, parameters and KMS key, ready for questions."""

    def __init__(self, run: Any, account: str, region: str):
        self.account, self.region, self.run = account, region, run
        self.managed = managed_policies()
        self.key_policies = {k.state["arn"]: json.loads(k.inputs["policy"]) for k in run.of_type(KEY)}
        self.secrets = {p.inputs["name"]: Secret(p.inputs["name"], p.state["arn"], p.inputs.get("keyId"))
                        for p in run.of_type(PARAMETER)}
        (bucket,) = run.of_type(BUCKET)
        self.bucket_arn = bucket.state["arn"]
        self.bucket_policy = json.loads(run.of_type(BUCKET_POLICY)[0].inputs["policy"])
        (rule,) = run.of_type(ENCRYPTION)[0].inputs["rules"]
        self.bucket_key_arn = rule["applyServerSideEncryptionByDefault"].get("kmsMasterKeyId")
        self.bucket_key_enabled = bool(rule.get("bucketKeyEnabled"))

    def role(self, name: str) -> Principal:
        role = self.run.named(name, ROLE)
        documents = [json.loads(p.inputs["policy"]) for p in self.run.of_type(ROLE_POLICY)
                     if p.inputs["role"] == role.id]
        documents += [self.managed[a.inputs["policyArn"]] for a in self.run.of_type(ATTACHMENT)
                      if a.inputs["role"] == role.state["name"]]
        return Principal(role.state["arn"], self.account, tuple(documents))

    def other_principal(self, name: str, *managed: str) -> Principal:
        """A role of the same account that the stack knows nothing of, with AWS managed policies."""
        return Principal(f"arn:aws:iam::{self.account}:role/{name}", self.account,
                         tuple(self.managed[arn] for arn in managed))

    def parameter_arn(self, path: str) -> str:
        return f"arn:aws:ssm:{self.region}:{self.account}:parameter{path}"

    def read_routes(self, secret: Secret) -> list[tuple[str, str]]:
        """Every (action, resource) that returns the secret's value: by name, by version, by any ancestor path."""
        routes = [(action, secret.arn) for action in ("ssm:GetParameter", "ssm:GetParameters",
                                                       "ssm:GetParameterHistory")]
        parts = secret.name.strip("/").split("/")
        ancestors = ["/", *("/" + "/".join(parts[:end]) for end in range(1, len(parts)))]
        routes += [("ssm:GetParametersByPath", self.parameter_arn(path)) for path in ancestors]
        return routes

    def can_read(self, principal: Principal, secret: Secret) -> bool:
        return any(allowed(Request(principal, action, resource)) for action, resource in self.read_routes(secret))

    def can_decrypt(self, principal: Principal, secret: Secret) -> bool:
        return self.can_use_key(principal, secret, "kms:Decrypt")

    def can_use_key(self, principal: Principal, secret: Secret, action: str) -> bool:
        """A KMS call as SSM makes it on the caller's behalf: through SSM, with the parameter's ARN as context."""
        if secret.key_arn is None:
            key_arn = f"arn:aws:kms:{self.region}:{self.account}:key/aws-ssm-default"
            key_policy = vendored("aws-ssm-key-policy", ACCOUNT=self.account, REGION=self.region)
        else:
            key_arn, key_policy = secret.key_arn, self.key_policies[secret.key_arn]
        context = {"kms:ViaService": f"ssm.{self.region}.amazonaws.com", "kms:CallerAccount": principal.account,
                   "kms:EncryptionContext:PARAMETER_ARN": secret.arn}
        return allowed(Request(principal, action, key_arn, context), key_policy, kms=True)

    def can_read_and_decrypt(self, principal: Principal, secret: Secret) -> bool:
        return self.can_read(principal, secret) and self.can_decrypt(principal, secret)

    def readable(self, principal: Principal, names: Sequence[str] | None = None) -> list[str]:
        """The secrets (by name) this principal can both read and decrypt."""
        return sorted(name for name, secret in self.secrets.items()
                      if (names is None or name in names) and self.can_read_and_decrypt(principal, secret))

    # --- objects in the backup bucket, as S3 and KMS decide each step -----------------------------------------

    def s3_context(self, key: str) -> str:
        """The encryption context's aws:s3:arn that S3 sends KMS: the bucket's ARN with an S3 Bucket Key, the
        object's without (S3 user guide, configuring-bucket-key)."""
        return self.bucket_arn if self.bucket_key_enabled else f"{self.bucket_arn}/{key}"

    def can_use_key_through_s3(self, principal: Principal, action: str, context_arn: str,
                               key_policy: Mapping[str, Any] | None = None) -> bool:
        """A KMS call as S3 makes it on the caller's behalf for an object of a bucket whose ARN (or the object's)
        is `context_arn`."""
        context = {"kms:ViaService": f"s3.{self.region}.amazonaws.com", "kms:CallerAccount": principal.account,
                   "kms:EncryptionContext:aws:s3:arn": context_arn}
        policy = key_policy if key_policy is not None else self.key_policies[self.bucket_key_arn]
        return allowed(Request(principal, action, self.bucket_key_arn, context), policy, kms=True)

    def can_do_steps(self, principal: Principal, key: str, steps: Sequence[tuple[str, Mapping[str, str], str]],
                     headers: Mapping[str, str] | None = None, key_policy: Mapping[str, Any] | None = None) -> bool:
        """Every step allowed by S3 (identity and bucket policy, over TLS) and by KMS through S3; `headers` travel
        with the first step only (a multipart upload's encryption headers go with CreateMultipartUpload)."""
        resource = f"{self.bucket_arn}/{key}"
        return all(
            allowed(Request(principal, action, resource,
                            {"aws:SecureTransport": "true", **context, **((headers or {}) if index == 0 else {})}),
                    self.bucket_policy)
            and self.can_use_key_through_s3(principal, kms_action, self.s3_context(key), key_policy)
            for index, (action, context, kms_action) in enumerate(steps))

    def can_upload(self, principal: Principal, key: str, headers: Mapping[str, str] | None = None,
                   key_policy: Mapping[str, Any] | None = None) -> bool:
        """A new object in parts, as etcd-backup uploads a snapshot; `headers` are the upload's SSE condition keys."""
        return self.can_do_steps(principal, key, UPLOAD_STEPS, headers, key_policy)

    def can_download(self, principal: Principal, key: str, key_policy: Mapping[str, Any] | None = None) -> bool:
        return self.can_do_steps(principal, key, READ_STEPS, key_policy=key_policy)
