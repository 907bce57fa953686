"""The stack's configuration: one frozen object, parsed and validated in one place.

Every value arrives as the string Pulumi hands a program (numbers and booleans as text,
lists and maps as JSON). Validation makes no network calls and stops at the first error,
which names the key, the bad value and what is allowed.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import pulumi
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

from etcd_stack import releases

NAMESPACE = "etcd"
REGION_KEY = "aws:region"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(pulumi.RunError):
    """A configuration value is wrong; the message is one line for the user."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key = key
        super().__init__(f"{key}: {_show(value)} is not allowed: {allowed}")


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    text = text.replace("\n", "\\n")
    return repr(text if len(text) <= 60 else text[:57] + "...")


class Bootstrap(StrEnum):
    DISCOVERY = "discovery"
    STATIC = "static"


class CaRotation(StrEnum):
    """Where a move to CA generation etcd:caGeneration stands (README: Operations)."""

    NONE = "none"  # only the current CA exists and issues
    TRUST_NEW = "trust-new"  # both CAs trusted; the previous one still issues
    ISSUE_NEW = "issue-new"  # both CAs trusted; the new one issues


class BackupLock(StrEnum):
    """How snapshots are protected from overwrite and deletion within the retention (README: Backups)."""

    GOVERNANCE = "governance"  # S3 Object Lock; the break-glass role may bypass it
    COMPLIANCE = "compliance"  # S3 Object Lock; nobody can shorten it, not even the account root
    POLICY = "policy"  # no Object Lock: bucket-policy denies on overwrite and version deletion


class BackupsOnDestroy(StrEnum):
    KEEP = "keep"  # `pulumi destroy` leaves the bucket and its snapshots in the account
    DELETE = "delete"  # `pulumi destroy` empties the bucket and deletes it


class NatStrategy(StrEnum):
    SINGLE = "single"
    ONE_PER_AZ = "one-per-az"


@dataclass(frozen=True, order=True)
class EtcdVersion:
    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def line(self) -> tuple[int, int]:
        return (self.major, self.minor)


# Odd, so a majority survives a failure; seven is etcd's own recommended ceiling.
CLUSTER_SIZES = (1, 3, 5, 7)


@dataclass(frozen=True)
class StackConfig:
    stack: str
    region: str
    cluster_name: str
    cluster_size: int
    version: EtcdVersion
    bootstrap: Bootstrap
    discovery_endpoint: str
    discovery_url: str | None
    instance_type: str
    data_volume_size: int
    heartbeat_ms: int
    election_ms: int
    vpc_cidr: ipaddress.IPv4Network
    nat_strategy: NatStrategy
    flow_log_retention_days: int
    bastion: bool
    bastion_instance_type: str
    ssh_allowed_cidrs: tuple[IPNetwork, ...]
    ssh_public_key: str | None
    backup_interval_minutes: int
    backup_retention_days: int
    alarm_topic_arn: str | None
    ca_generation: int
    ca_rotation: CaRotation
    tags: tuple[tuple[str, str], ...]
    image_generation: int
    vpc_id: str | None
    private_subnet_ids: tuple[str, ...]
    member_ips: tuple[ipaddress.IPv4Address, ...]
    key_generation: int
    client_cidrs: tuple[IPNetwork, ...]
    client_security_group_ids: tuple[str, ...]
    operator_csrs: tuple[tuple[str, str], ...]
    backup_lock: BackupLock
    backup_break_glass_role_arn: str | None
    backups_on_destroy: BackupsOnDestroy
    operator_key: bool
    defrag_schedule: str
    quota_backend_bytes: int | None
    release_sha256: str | None

    @property
    def release_arch(self) -> str:
        """etcd's name for the members' architecture (from the instance type)."""
        return releases.ETCD_ARCH[architecture(self.instance_type)]

    @property
    def release_sum(self) -> str:
        """The SHA-256 the members' release tarball must have: the published one, else etcd:releaseSha256."""
        return releases.SHA256.get(str(self.version), {}).get(self.release_arch) or self.release_sha256 or ""

    def client_sources(self, vpc_cidr: IPNetwork) -> tuple[IPNetwork, ...]:
        """The CIDRs admitted to 2379 beside the listed client groups: the VPC's (the one given, or the one the
        stack makes) when nothing is listed."""
        return self.client_cidrs or (() if self.client_security_group_ids else (vpc_cidr,))

    @property
    def common_tags(self) -> dict[str, str]:
        return {**dict(self.tags), "etcd-cluster": self.cluster_name, "pulumi-stack": self.stack}


# --- value parsers: (key, text) -> value, raising ConfigError -------------------------------

def _integer(low: int, high: int) -> Callable[[str, str], int]:
    def parse(key: str, text: str) -> int:
        if not re.fullmatch(r"-?[0-9]+", text.strip()):
            raise ConfigError(key, text, f"a whole number from {low} to {high}")
        value = int(text)
        if not low <= value <= high:
            raise ConfigError(key, text, f"a whole number from {low} to {high}")
        return value

    return parse


def _choice(*allowed: int) -> Callable[[str, str], int]:
    names = ", ".join(str(a) for a in allowed[:-1]) + f" or {allowed[-1]}"

    def parse(key: str, text: str) -> int:
        if text.strip() not in {str(a) for a in allowed}:
            raise ConfigError(key, text, f"one of {names}")
        return int(text)

    return parse


def _enum(kind: type[StrEnum]) -> Callable[[str, str], StrEnum]:
    names = " or ".join(f"'{member.value}'" for member in kind)

    def parse(key: str, text: str) -> StrEnum:
        try:
            return kind(text)
        except ValueError:
            raise ConfigError(key, text, names) from None

    return parse


def _boolean(key: str, text: str) -> bool:
    if text not in ("true", "false"):
        raise ConfigError(key, text, "true or false")
    return text == "true"


def _json(key: str, text: str, kind: type, what: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        raise ConfigError(key, text, what) from None
    if not isinstance(value, kind):
        raise ConfigError(key, text, what)
    return value


def _version(key: str, text: str) -> EtcdVersion:
    match = re.fullmatch(r"(3)\.([0-9]+)\.([0-9]+)", text.strip())
    if not match:
        raise ConfigError(key, text, "an etcd release as MAJOR.MINOR.PATCH without a 'v', e.g. 3.6.14")
    version = EtcdVersion(*(int(part) for part in match.groups()))
    if not (3, 4) <= version.line <= (3, 7):
        raise ConfigError(key, text, "a release of etcd 3.4, 3.5, 3.6 or 3.7")
    return version


# Short enough that auto-named load balancers and target groups stay within AWS's 32 characters.
_CLUSTER_NAME = re.compile(r"[a-z][a-z0-9-]{0,14}[a-z0-9]")


# Load balancer names must not begin with `internal-`, security group names not with `sg-` (ELBv2, EC2 APIs).
_REFUSED_NAME_PREFIXES = ("internal-", "sg-")


def _cluster_name(key: str, text: str) -> str:
    if not _CLUSTER_NAME.fullmatch(text) or "--" in text:
        raise ConfigError(
            key, text, "2 to 16 lowercase letters, digits and single hyphens, starting with a letter"
        )
    if text.startswith(_REFUSED_NAME_PREFIXES):
        raise ConfigError(
            key, text, "a name not starting with 'internal-' (AWS refuses such load balancer names) or 'sg-' "
            "(such security group names)",
        )
    return text


# The stack names SSM paths and the private DNS zone, so it must be a DNS label.
_STACK_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def check_stack_name(stack: str) -> str:
    if not _STACK_NAME.fullmatch(stack):
        raise ConfigError(
            "stack", stack, "a stack name of 1 to 63 lowercase letters, digits and hyphens (it becomes part of "
            "DNS and SSM parameter names; `pulumi stack rename` changes it)",
        )
    return stack


# Families like m7g, c6gn, t4g, r8gd, im4gn, is4gen (and a1) are AWS Graviton: arm64.
_INSTANCE_TYPE = re.compile(
    r"(?P<family>[a-z][a-z0-9]*[0-9][a-z0-9]*(-flex)?|[a-z]-[0-9a-z]+)"
    r"\.(nano|micro|small|medium|large|[0-9]*xlarge|metal(-[0-9]+xl)?)"
)
_GRAVITON_FAMILY = re.compile(r"a1|[a-z]+[0-9]+g[a-z]*(-flex)?")


def _instance_type(key: str, text: str) -> str:
    if not _INSTANCE_TYPE.fullmatch(text):
        raise ConfigError(key, text, "an EC2 instance type such as m7i.large or m7g.large")
    return text


def architecture(instance_type: str) -> str:
    """The CPU architecture ('x86_64' or 'arm64') an EC2 instance type runs."""
    family = instance_type.split(".", 1)[0]
    return "arm64" if _GRAVITON_FAMILY.fullmatch(family) else "x86_64"


_RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


def _vpc_cidr(key: str, text: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.IPv4Network(text)
    except ValueError:
        hint = _network_hint(text)
        raise ConfigError(key, text, f"an IPv4 network in CIDR form{hint}") from None
    if not any(network.subnet_of(private) for private in _RFC1918):
        raise ConfigError(key, text, "a private range inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")
    if not 16 <= network.prefixlen <= 24:
        raise ConfigError(
            key, text, "a prefix from /16 to /24 (AWS allows no larger VPC; a smaller one leaves too few addresses)"
        )
    return network


def _network_hint(text: str) -> str:
    try:
        return f" (did you mean {ipaddress.ip_network(text, strict=False)}?)"
    except ValueError:
        return " such as 10.0.0.0/16"


# The widest SSH source ranges allowed, per IP version.
SSH_MIN_PREFIX = {4: 16, 6: 48}


def _cidrs(key: str, text: str, example: str, check: Callable[[str, str, IPNetwork], None]) -> tuple[IPNetwork, ...]:
    """A JSON list of CIDRs, each checked by `check`, duplicates listed once."""
    items = _json(key, text, list, f"a list of CIDRs such as [\"{example}\"]")
    networks: list[IPNetwork] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(key, item, f"each entry a CIDR string such as \"{example}\"")
        try:
            network = ipaddress.ip_network(item)
        except ValueError:
            raise ConfigError(key, item, f"a CIDR such as {example}{_network_hint(item)}") from None
        check(key, item, network)
        if network not in networks:
            networks.append(network)
    return tuple(networks)


def _narrow_for_ssh(key: str, item: str, network: IPNetwork) -> None:
    if network.prefixlen < SSH_MIN_PREFIX[network.version]:
        raise ConfigError(key, item, "a narrow range: IPv4 /16 or longer, IPv6 /48 or longer; "
                                     "list the addresses you connect from")


def _ssh_cidrs(key: str, text: str) -> tuple[IPNetwork, ...]:
    return _cidrs(key, text, "198.51.100.7/32", _narrow_for_ssh)


# EC2 key pairs import RSA and Ed25519 keys only.
_SSH_KEY_TYPES = ("ssh-ed25519", "ssh-rsa")


def _ssh_public_key(key: str, text: str) -> str:
    text = text.strip()
    if "PRIVATE KEY" in text or text.startswith("-----BEGIN"):
        raise ConfigError(key, "<private key material>", "an OpenSSH public key (the .pub file); never a private key")
    parts = text.split()
    if len(parts) < 2 or parts[0] not in _SSH_KEY_TYPES:
        raise ConfigError(key, text, "an OpenSSH public key starting with ssh-ed25519 or ssh-rsa")
    try:
        public_key = load_ssh_public_key(f"{parts[0]} {parts[1]}".encode())
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(key, text, "an OpenSSH public key whose base64 body is intact and matches its type") from None
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < 2048:
        raise ConfigError(key, text, "an RSA key of at least 2048 bits, or an ssh-ed25519 key")
    if not isinstance(public_key, rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise ConfigError(key, text, "an ssh-ed25519 or ssh-rsa key")
    return " ".join(parts)


def _url(key: str, text: str, need_path: bool) -> str:
    parts = urlsplit(text)
    # Plain HTTP would let anyone on the path swap the peers the members bootstrap with.
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(key, text, "an https URL without query or fragment")
    if need_path and parts.path.strip("/") == "":
        raise ConfigError(key, text, "a discovery URL with a token path, e.g. https://discovery.etcd.io/3e86b59982e49066c5d813af1c2e2579cbf573de")
    return text.rstrip("/") if not need_path else text


def _discovery_endpoint(key: str, text: str) -> str:
    return _url(key, text, need_path=False)


def _discovery_url(key: str, text: str) -> str:
    return _url(key, text, need_path=True)


# CloudWatch Logs accepts only these retention periods.
FLOW_LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)

# Tags the stack sets itself; a user tag of the same key would be overwritten.
RESERVED_TAGS = ("Name", "etcd-cluster", "pulumi-stack")
# IAM's tag pattern [\p{L}\p{Z}\p{N}_.:/=+\-@]: letters, separators, digits and these (IAM API reference, Tag).
_TAG_SYMBOLS = "_.:/=+-@"
TAG_CHARACTERS = "letters, digits, spaces and _ . : / = + - @"


def _tag_text_allowed(text: str) -> bool:
    return all(ch in _TAG_SYMBOLS or unicodedata.category(ch)[0] in "LZN" for ch in text)


def _tags(key: str, text: str) -> tuple[tuple[str, str], ...]:
    items = _json(key, text, dict, "a map of tag names to string values, e.g. {\"team\": \"platform\"}")
    if len(items) > 40:
        raise ConfigError(key, f"{len(items)} tags", "at most 40 tags (AWS allows 50; the stack sets its own)")
    for name, value in items.items():
        if not isinstance(value, str):
            raise ConfigError(f"{key}.{name}", value, "a string value")
        if (not 1 <= len(name) <= 128 or name.lower().startswith("aws:") or name in RESERVED_TAGS
                or not _tag_text_allowed(name)):
            raise ConfigError(
                f"{key}.{name}", name,
                f"a tag name of 1 to 128 {TAG_CHARACTERS}, not starting with 'aws:' and not one of "
                + ", ".join(RESERVED_TAGS),
            )
        if len(value) > 256 or not _tag_text_allowed(value):
            raise ConfigError(f"{key}.{name}", value, f"a tag value of at most 256 {TAG_CHARACTERS}")
    return tuple(sorted(items.items()))


_SNS_TOPIC = re.compile(r"arn:aws(-[a-z]+)*:sns:[a-z]{2}(-[a-z]+)+-[0-9]:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?")


def _sns_topic(key: str, text: str) -> str:
    if not _SNS_TOPIC.fullmatch(text):
        raise ConfigError(key, text, "an SNS topic ARN such as arn:aws:sns:eu-west-2:123456789012:etcd-alarms")
    return text


_ROLE_ARN = re.compile(r"arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}")


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _sha256(key: str, text: str) -> str:
    if not _SHA256.fullmatch(text):
        raise ConfigError(key, text, "a SHA-256 of 64 lowercase hexadecimal digits (sha256sum's output)")
    return text


def _role_arn(key: str, text: str) -> str:
    if not _ROLE_ARN.fullmatch(text):
        raise ConfigError(key, text, "an IAM role ARN such as arn:aws:iam::123456789012:role/etcd-break-glass")
    return text


_REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]")


def _region(key: str, text: str) -> str:
    if not _REGION.fullmatch(text):
        raise ConfigError(key, text, "an AWS region code such as eu-west-2")
    return text


_VPC_ID = re.compile(r"vpc-([0-9a-f]{8}|[0-9a-f]{17})")
_SUBNET_ID = re.compile(r"subnet-([0-9a-f]{8}|[0-9a-f]{17})")
# One subnet per zone and at least three zones, so that losing a zone keeps a majority of members.
MIN_ZONES = 3


def _vpc_id(key: str, text: str) -> str:
    if not _VPC_ID.fullmatch(text):
        raise ConfigError(key, text, "a VPC id such as vpc-0a1b2c3d4e5f60718")
    return text


def _subnet_ids(key: str, text: str) -> tuple[str, ...]:
    items = _json(key, text, list, 'a list of subnet ids such as ["subnet-0a1b2c3d4e5f60718", ...]')
    for item in items:
        if not isinstance(item, str) or not _SUBNET_ID.fullmatch(item):
            raise ConfigError(key, item, "each entry a subnet id such as subnet-0a1b2c3d4e5f60718")
    if len(set(items)) != len(items):
        raise ConfigError(key, text, "each subnet once")
    return tuple(items)


def _member_ips(key: str, text: str) -> tuple[ipaddress.IPv4Address, ...]:
    items = _json(key, text, list, 'a list of IPv4 addresses such as ["10.50.0.10", ...]')
    addresses = []
    for item in items:
        try:
            addresses.append(ipaddress.IPv4Address(item if isinstance(item, str) else ""))
        except ValueError:
            raise ConfigError(key, item, "each entry an IPv4 address such as 10.50.0.10") from None
    if len(set(addresses)) != len(addresses):
        raise ConfigError(key, text, "each address once")
    return tuple(addresses)
def _private_ipv4(key: str, item: str, network: IPNetwork) -> None:
    if network.version != 4 or not any(network.subnet_of(private) for private in _RFC1918):
        raise ConfigError(key, item, "a private IPv4 range inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16 "
                                     "(the load balancer is internal)")


def _client_cidrs(key: str, text: str) -> tuple[IPNetwork, ...]:
    return _cidrs(key, text, "10.1.0.0/16", _private_ipv4)


_SECURITY_GROUP_ID = re.compile(r"sg-([0-9a-f]{8}|[0-9a-f]{17})")


def _security_group_ids(key: str, text: str) -> tuple[str, ...]:
    items = _json(key, text, list, "a list of security group ids such as [\"sg-0123456789abcdef0\"]")
    for item in items:
        if not isinstance(item, str) or not _SECURITY_GROUP_ID.fullmatch(item):
            raise ConfigError(key, item, "a security group id such as sg-0123456789abcdef0")
    return tuple(dict.fromkeys(items))


# A person's name becomes the certificate's CN; member names and root (etcd's super user) are not people.
_OPERATOR_NAME = re.compile(r"[a-z][a-z0-9._-]{0,62}")
_NOT_OPERATORS = re.compile(r"etcd-[0-9]+|root")


def _operator_csrs(key: str, text: str) -> tuple[tuple[str, str], ...]:
    items = _json(key, text, dict, "a map of person to PEM certificate request, made by `etcd-stack operator-csr`")
    for name, pem in sorted(items.items()):
        check_operator_csr(f"{key}.{name}", name, pem)
    return tuple(sorted(items.items()))


def check_operator_csr(key: str, name: str, pem: Any) -> None:
    """A request the stack may sign for a person: their name as its only subject, no host names."""
    if not _OPERATOR_NAME.fullmatch(name) or _NOT_OPERATORS.fullmatch(name):
        raise ConfigError(key, name, "a person's name: lowercase letters, digits, '.', '_' or '-', "
                                     "starting with a letter; not a member name or root")
    try:
        request = x509.load_pem_x509_csr(pem.encode())
    except (ValueError, AttributeError):
        raise ConfigError(key, pem, "a PEM certificate request (-----BEGIN CERTIFICATE REQUEST-----)") from None
    if not request.is_signature_valid:
        raise ConfigError(key, "<request>", "a certificate request signed by its own key")
    public_key = request.public_key()
    ecdsa = isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name in ("secp256r1", "secp384r1")
    if not (ecdsa or (isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size >= 2048)):
        raise ConfigError(key, "<request>", "a request for an ECDSA P-256 or P-384 key, or an RSA key of 2048+ bits")
    common_names = [a.value for a in request.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    if common_names != [name]:
        raise ConfigError(key, ",".join(map(str, common_names)), f"a request whose common name is {name!r}")
    # Names in a request would be copied into the certificate: the peer listener admits any certificate naming
    # the members' peer name, so a person's certificate names nothing.
    if list(request.extensions):
        raise ConfigError(key, "<request with extensions>", "a request with no extensions (no subject alternative "
                                                           "names): the certificate is for a person, not a host")


# A systemd OnCalendar= time, in a subset of systemd.time(7): a keyword, or optional weekdays, an optional
# day of the month and a time of day. Nothing more often than daily: each run blocks each member in turn.
DEFRAG_SCHEDULE = "Sun *-*-* 03:30:00"
_DEFRAG_KEYWORDS = ("daily", "weekly", "monthly")
_WEEKDAY = r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_CALENDAR = re.compile(
    rf"(?:(?P<days>{_WEEKDAY}(?:(?:,|\.\.){_WEEKDAY})*) )?"
    r"(?:\*-\*-(?P<day>\*|[0-9]{2}(?:\.\.[0-9]{2})?) )?"
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2}))?"
)
SCHEDULE_ALLOWED = ("daily, weekly, monthly, or [weekdays] [*-*-DAY] HH:MM[:SS] as systemd's OnCalendar= reads it, "
                    "at most once a day, e.g. 'Sun *-*-* 03:30:00' or 'Mon..Fri 02:15'")


def _calendar(key: str, text: str) -> str:
    if text in _DEFRAG_KEYWORDS:
        return text
    match = _CALENDAR.fullmatch(text)
    days = match and [int(day) for day in re.findall(r"[0-9]+", match["day"] or "")]
    if (not match or int(match["hour"]) > 23 or int(match["minute"]) > 59 or int(match["second"] or 0) > 59
            or not all(1 <= day <= 31 for day in days) or days != sorted(days)):
        raise ConfigError(key, text, SCHEDULE_ALLOWED)
    return text


# Below 16 MiB a member's own bookkeeping would fill it; above 8 GiB etcd warns that it exceeds the
# recommended maximum (server/storage/quota.go, MaxQuotaBytes).
QUOTA_BYTES = (16 * 1024**2, 8 * 1024**3)


# --- the key table: the one list of what `etcd:` accepts -----------------------------------

@dataclass(frozen=True)
class Key:
    name: str
    field: str
    parse: Callable[[str, str], Any]
    default: str | None
    meaning: str


KEYS: tuple[Key, ...] = (
    Key("clusterName", "cluster_name", _cluster_name, "etcd",
        "Name of the cluster; prefixes resource names and tags"),
    Key("clusterSize", "cluster_size", _choice(*CLUSTER_SIZES), "3",
        "Number of etcd members (odd, so a majority survives a failure)"),
    Key("version", "version", _version, "3.6.14",
        "etcd release each member runs"),
    Key("bootstrap", "bootstrap", _enum(Bootstrap), "discovery",
        "How members find each other the first time: `discovery` or `static`"),
    Key("discoveryEndpoint", "discovery_endpoint", _discovery_endpoint, "https://discovery.etcd.io",
        "v2 discovery service asked for a new token (bootstrap `discovery`)"),
    Key("discoveryUrl", "discovery_url", _discovery_url, None,
        "A discovery URL you made yourself; skips asking the endpoint"),
    Key("instanceType", "instance_type", _instance_type, "m7i.large",
        "EC2 instance type of the members (Graviton types get arm64 etcd)"),
    Key("dataVolumeSize", "data_volume_size", _integer(8, 16384), "20",
        "Size in GiB of each member's encrypted gp3 data volume"),
    Key("heartbeatMs", "heartbeat_ms", _integer(10, 10000), "100",
        "Raft heartbeat interval in milliseconds"),
    Key("electionMs", "election_ms", _integer(50, 50000), "1000",
        "Raft election timeout in milliseconds (at least 5 x heartbeat)"),
    Key("vpcCidr", "vpc_cidr", _vpc_cidr, "10.0.0.0/16",
        "Private IPv4 range of the VPC, /16 to /24"),
    Key("natStrategy", "nat_strategy", _enum(NatStrategy), "single",
        "`single` NAT gateway, or `one-per-az` so no AZ depends on another for egress"),
    Key("flowLogRetentionDays", "flow_log_retention_days", _choice(*FLOW_LOG_RETENTION_DAYS), "90",
        "Days CloudWatch Logs keeps the VPC flow logs"),
    Key("bastion", "bastion", _boolean, "true",
        "Run an SSH bastion in a public subnet (SSM Session Manager works either way)"),
    Key("bastionInstanceType", "bastion_instance_type", _instance_type, "t4g.micro",
        "EC2 instance type of the bastion"),
    Key("sshAllowedCidrs", "ssh_allowed_cidrs", _ssh_cidrs, "[]",
        "CIDRs allowed to reach the bastion on port 22 (required with the bastion)"),
    Key("sshPublicKey", "ssh_public_key", _ssh_public_key, None,
        "OpenSSH public key (ed25519 or RSA) for the bastion's key pair (required with the bastion)"),
    Key("backupIntervalMinutes", "backup_interval_minutes", _integer(5, 1440), "60",
        "Minutes between snapshots; the leader uploads one per interval"),
    Key("backupRetentionDays", "backup_retention_days", _integer(1, 3650), "14",
        "Days the backup bucket keeps each snapshot"),
    Key("alarmTopicArn", "alarm_topic_arn", _sns_topic, None,
        "SNS topic the alarms notify (the alarms exist either way)"),
    Key("caGeneration", "ca_generation", _integer(1, 1000), "1",
        "Which cluster CA is current; raise it by one to move to a new CA"),
    Key("caRotation", "ca_rotation", _enum(CaRotation), "none",
        "Stage of a CA move: `trust-new`, then `issue-new`, then `none` again"),
    Key("tags", "tags", _tags, "{}",
        "Tags added to every AWS resource"),
    Key("imageGeneration", "image_generation", _integer(1, 1000), "1",
        "Raise by one to roll the members onto the newest Amazon Linux 2023 image, one at a time"),
    Key("vpcId", "vpc_id", _vpc_id, None,
        "A VPC you already have to deploy into; the stack then creates no VPC, subnets, gateways or flow logs"),
    Key("privateSubnetIds", "private_subnet_ids", _subnet_ids, "[]",
        "With `etcd:vpcId`: its private subnets, one per availability zone, at least three zones"),
    Key("memberIps", "member_ips", _member_ips, "[]",
        "With `etcd:vpcId`: each member's address, inside those subnets (else planned from host 10 of each)"),
    Key("keyGeneration", "key_generation", _integer(1, 1000), "1",
        "Which private keys the members and the operator hold; raise it by one to replace every key"),
    Key("clientCidrs", "client_cidrs", _client_cidrs, "[]",
        "Private CIDRs whose clients may reach etcd on 2379 (with no CIDR and no group: the VPC)"),
    Key("clientSecurityGroupIds", "client_security_group_ids", _security_group_ids, "[]",
        "Security groups whose instances may reach etcd on 2379"),
    Key("operatorCsrs", "operator_csrs", _operator_csrs, "{}",
        "Per-person client certificate requests the stack signs (`etcd-stack operator-csr`); keys stay with them"),
    Key("backupLock", "backup_lock", _enum(BackupLock), "governance",
        "How snapshots resist overwrite and deletion: Object Lock `governance` or `compliance`, or `policy` denies"),
    Key("backupBreakGlassRoleArn", "backup_break_glass_role_arn", _role_arn, None,
        "IAM role that alone may read snapshots besides the members, delete versions and bypass governance"),
    Key("backupsOnDestroy", "backups_on_destroy", _enum(BackupsOnDestroy), "keep",
        "What `pulumi destroy` does with the backup bucket: `keep` it and its snapshots, or `delete` them"),
    Key("operatorKey", "operator_key", _boolean, "true",
        "Issue a shared operator key and certificate (secret outputs); `false` keeps every client key out of "
        "the stack (people bring `etcd:operatorCsrs`)"),
    Key("defragSchedule", "defrag_schedule", _calendar, DEFRAG_SCHEDULE,
        "When each member's defragmentation timer fires (systemd OnCalendar, up to 1 h later at random); only the "
        "leader acts, one member at a time"),
    Key("quotaBackendBytes", "quota_backend_bytes", _integer(*QUOTA_BYTES), None,
        "etcd's space quota in bytes (NOSPACE beyond it); else 8 GiB or half the data volume, whichever is less"),
    Key("releaseSha256", "release_sha256", _sha256, None,
        "SHA-256 of the etcd release tarball for the members' architecture, for an `etcd:version` whose sum this "
        "project does not list (the deployer checks the tarball against it before the stack's bucket takes it)"),
)

_BY_NAME = {key.name: key for key in KEYS}


def load(raw: Mapping[str, str], stack: str) -> StackConfig:
    """Builds the stack's config from Pulumi's flat `namespace:key -> text` map."""
    for full_key in sorted(raw):
        namespace, _, name = full_key.partition(":")
        if namespace == NAMESPACE and name not in _BY_NAME:
            close = difflib.get_close_matches(name, list(_BY_NAME), n=1, cutoff=0.6)
            hint = f"did you mean etcd:{close[0]}?" if close else "see the configuration table in README.md"
            raise ConfigError(full_key, raw[full_key], f"unknown key; {hint}")

    region_text = raw.get(REGION_KEY)
    if region_text is None:
        raise ConfigError(REGION_KEY, "", "a region is required: pulumi config set aws:region eu-west-2")
    values: dict[str, Any] = {"stack": check_stack_name(stack), "region": _region(REGION_KEY, region_text)}
    explicit = set()
    for key in KEYS:
        full_key = f"{NAMESPACE}:{key.name}"
        text = raw.get(full_key)
        if text is None:
            values[key.field] = None if key.default is None else key.parse(full_key, key.default)
        else:
            explicit.add(key.name)
            values[key.field] = key.parse(full_key, text)
    config = StackConfig(**values)
    _check_together(config, explicit)
    return config


def _check_together(c: StackConfig, explicit: set[str]) -> None:
    """Rules that relate two or more keys."""
    if c.election_ms < 5 * c.heartbeat_ms:
        raise ConfigError(
            "etcd:electionMs", str(c.election_ms),
            f"at least 5 x etcd:heartbeatMs ({5 * c.heartbeat_ms}); etcd refuses a shorter election timeout",
        )
    if c.bootstrap is Bootstrap.DISCOVERY and c.version.line >= (3, 7):
        raise ConfigError(
            "etcd:bootstrap", c.bootstrap.value,
            f"etcd {c.version} has no v2 discovery (removed in 3.7); set etcd:bootstrap to 'static'",
        )
    arch = c.release_arch
    published = releases.SHA256.get(str(c.version), {}).get(arch)
    if published and c.release_sha256 and c.release_sha256 != published:
        raise ConfigError(
            "etcd:releaseSha256", c.release_sha256,
            f"unset, or the published {arch} sum of etcd {c.version} ({published})",
        )
    if not published and not c.release_sha256:
        raise ConfigError(
            "etcd:version", str(c.version),
            f"a release whose {arch} checksum is known: {_version_list(releases.known_versions(arch))}, "
            f"or set etcd:releaseSha256 to the sum of etcd-v{c.version}-linux-{arch}.tar.gz",
        )
    if c.bootstrap is Bootstrap.STATIC:
        for name in ("discoveryUrl", "discoveryEndpoint"):
            if name in explicit:
                raise ConfigError(
                    f"etcd:{name}", "set", "only with etcd:bootstrap 'discovery'; remove it or change etcd:bootstrap",
                )
    if c.ca_rotation is not CaRotation.NONE and c.ca_generation < 2:
        raise ConfigError(
            "etcd:caRotation", c.ca_rotation.value, "'none' until etcd:caGeneration is raised to a new CA (2 or more)"
        )
    if c.backups_on_destroy is BackupsOnDestroy.DELETE and c.backup_lock is BackupLock.COMPLIANCE:
        raise ConfigError(
            "etcd:backupsOnDestroy", c.backups_on_destroy.value,
            "'keep' with etcd:backupLock 'compliance' (nobody can delete a locked snapshot before its retention ends)",
        )
    for cidr in c.ssh_allowed_cidrs:
        if cidr.version == 4 and cidr.overlaps(c.vpc_cidr):
            raise ConfigError(
                "etcd:sshAllowedCidrs", str(cidr),
                f"addresses outside the VPC's {c.vpc_cidr} (the bastion is reached from outside it)",
            )
    half_volume = c.data_volume_size * 1024**3 // 2
    if c.quota_backend_bytes is not None and c.quota_backend_bytes > half_volume:
        raise ConfigError(
            "etcd:quotaBackendBytes", str(c.quota_backend_bytes),
            f"at most half of etcd:dataVolumeSize ({half_volume} bytes): a defragmentation writes a second copy",
        )
    _check_existing_vpc(c, explicit)
    if c.bastion:
        if not c.ssh_allowed_cidrs:
            raise ConfigError(
                "etcd:sshAllowedCidrs", "[]",
                "at least one CIDR while etcd:bastion is true (or set etcd:bastion false and use SSM Session Manager)",
            )
        if c.ssh_public_key is None:
            raise ConfigError(
                "etcd:sshPublicKey", "", "an OpenSSH public key while etcd:bastion is true (or set etcd:bastion false)",
            )


# Keys that shape a network the stack creates; with etcd:vpcId there is none.
_OWN_NETWORK_KEYS = ("vpcCidr", "natStrategy", "flowLogRetentionDays")


def _check_existing_vpc(c: StackConfig, explicit: set[str]) -> None:
    if c.vpc_id is None:
        for name in ("privateSubnetIds", "memberIps"):
            if name in explicit:
                raise ConfigError(
                    f"etcd:{name}", "set", "only with etcd:vpcId (in a VPC of its own the stack plans its subnets)",
                )
        return
    if len(c.private_subnet_ids) < MIN_ZONES:
        raise ConfigError(
            "etcd:privateSubnetIds", json.dumps(list(c.private_subnet_ids)),
            f"at least {MIN_ZONES} private subnets of etcd:vpcId, one per availability zone",
        )
    for name in _OWN_NETWORK_KEYS:
        if name in explicit:
            raise ConfigError(f"etcd:{name}", "set", "only without etcd:vpcId (the stack creates no network then)")
    if c.bastion:
        raise ConfigError(
            "etcd:bastion", "true", "false with etcd:vpcId (the stack creates no public subnet; use Session Manager)",
        )
    if c.member_ips and len(c.member_ips) != c.cluster_size:
        raise ConfigError(
            "etcd:memberIps", f"{len(c.member_ips)} addresses", f"one address per member ({c.cluster_size})",
        )


@dataclass(frozen=True)
class SubnetFacts:
    """What the EC2 API says about a subnet named in etcd:privateSubnetIds."""

    id: str
    vpc_id: str
    cidr: ipaddress.IPv4Network
    availability_zone: str


def look_up(key: str, value: str, region: str, fetch: Callable[[str], Any]) -> Any:
    """What the cloud API says about a configured id; an id it cannot find is a config error naming the key."""
    try:
        return fetch(value)
    except Exception as error:  # the API's own error, whatever its type, is shown in the one line
        answer = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(key, value, f"an id that exists in this account in {region}; the API answered: {answer}"
                          ) from None


def reserved(subnet: ipaddress.IPv4Network) -> frozenset[ipaddress.IPv4Address]:
    """The five addresses AWS keeps in every subnet: the first four and the last."""
    return frozenset([*(subnet[i] for i in range(4)), subnet[-1]])


def check_existing_network(c: StackConfig, vpc_dns: tuple[bool, bool], subnets: Sequence[SubnetFacts]) -> None:
    """Rules on what the EC2 API answered about etcd:vpcId (DNS support, DNS hostnames) and
    etcd:privateSubnetIds, checked before any resource."""
    if not all(vpc_dns):
        raise ConfigError(
            "etcd:vpcId", c.vpc_id, "a VPC with DNS support and DNS hostnames on (the members' private zone "
            "resolves only then): aws ec2 modify-vpc-attribute --enable-dns-hostnames",
        )
    for subnet in subnets:
        if subnet.vpc_id != c.vpc_id:
            raise ConfigError(
                "etcd:privateSubnetIds", subnet.id, f"subnets of etcd:vpcId {c.vpc_id}; it is in {subnet.vpc_id}",
            )
    zones = [subnet.availability_zone for subnet in subnets]
    if len(set(zones)) != len(zones):
        raise ConfigError("etcd:privateSubnetIds", ", ".join(zones), "one subnet per availability zone")
    for address in c.member_ips:
        inside = [s for s in subnets if address in s.cidr]
        if not inside or address in reserved(inside[0].cidr):
            cidrs = ", ".join(str(s.cidr) for s in subnets)
            raise ConfigError(
                "etcd:memberIps", str(address),
                f"addresses inside etcd:privateSubnetIds ({cidrs}), not one of the five AWS reserves in each",
            )
    most = -(-c.cluster_size // len(subnets))
    for subnet in subnets:
        count = sum(address in subnet.cidr for address in c.member_ips)
        if count > most:
            raise ConfigError(
                "etcd:memberIps", f"{count} in {subnet.availability_zone}",
                f"at most {most} members per zone, so that losing a zone keeps a majority",
            )


def _version_list(versions: list[str]) -> str:
    """3.5.3, 3.5.4, ... 3.5.27 written as '3.5.3 to 3.5.27' where patches run without a gap."""
    runs: list[list[tuple[int, ...]]] = []
    for version in sorted(tuple(int(part) for part in v.split(".")) for v in versions):
        last = runs[-1][-1] if runs else None
        if last and last[:2] == version[:2] and last[2] + 1 == version[2]:
            runs[-1].append(version)
        else:
            runs.append([version])
    def name(version: tuple[int, ...]) -> str:
        return ".".join(map(str, version))

    text = [f"{name(run[0])} to {name(run[-1])}" if len(run) >= 3 else ", ".join(map(name, run)) for run in runs]
    return ", ".join(text)


def raw_from_pulumi() -> dict[str, str]:
    """Every config value this program was given, from the Pulumi runtime."""
    from pulumi.runtime import config as runtime_config

    raw = dict(runtime_config.get_config_env())
    raw.update(runtime_config.CONFIG.get())
    return {key: str(value) for key, value in raw.items()}


def from_stack_file(document: Mapping[str, Any] | None) -> dict[str, str]:
    """Turns a parsed Pulumi.<stack>.yaml into the flat text map Pulumi would hand the program."""
    section = (document or {}).get("config") or {}
    if not isinstance(section, Mapping):
        raise ConfigError("config", section, "a map of namespace:key to value")
    raw: dict[str, str] = {}
    for key, value in section.items():
        if ":" not in str(key):
            raise ConfigError(str(key), value, "a key of the form namespace:name, e.g. etcd:clusterSize")
        if isinstance(value, Mapping) and "secure" in value:
            raise ConfigError(str(key), "[secret]", "a plain value; the offline render cannot decrypt secrets")
        if isinstance(value, bool):
            raw[str(key)] = "true" if value else "false"
        elif isinstance(value, list | dict):
            raw[str(key)] = json.dumps(value)
        else:
            raw[str(key)] = str(value)
    return raw
