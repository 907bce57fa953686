"""A discovery token, minted once from a v2 discovery service and kept in the stack's state.

`pulumi up` creates it by asking `<endpoint>/new?size=N`; later runs read it from state and never
ask again, so members' user_data stays stable. A token only serves the first bootstrap: a later size
or endpoint changes nothing (members added later join as learners), and a replaced token, an input of
every member, would replace every member at once.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pulumi
import requests
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider

ATTEMPTS = 4
FIRST_DELAY_S = 1.0
TIMEOUT_S = 10.0
WAY_OUT = "set etcd:bootstrap to 'static' to bootstrap without a discovery service"


class DiscoveryError(Exception):
    """The discovery service could not give a usable token; the message says what failed."""


class _Permanent(Exception):
    pass


def _get(session: requests.Session, url: str, timeout: float) -> requests.Response:
    try:
        response = session.get(url, timeout=timeout)
    except requests.Timeout:
        raise TimeoutError(f"no answer within {timeout:g}s") from None
    except requests.ConnectionError as error:
        raise ConnectionError(f"could not connect ({type(error).__name__})") from None
    if response.status_code >= 500:
        raise ConnectionError(f"HTTP {response.status_code}")
    if response.status_code != 200:
        raise _Permanent(f"HTTP {response.status_code}")
    return response


def _with_retries(action: Callable[[], str], attempts: int, first_delay: float, sleep: Callable[[float], None]) -> str:
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except (TimeoutError, ConnectionError) as error:
            if attempt == attempts:
                raise DiscoveryError(f"{error} after {attempts} attempts") from None
            sleep(delay)
            delay *= 2
        except _Permanent as error:
            raise DiscoveryError(str(error)) from None
    raise AssertionError("unreachable")


def _check_token_url(text: str, endpoint: str) -> str:
    url = text.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/") == "" or " " in url:
        raise DiscoveryError(f"the answer is not a discovery URL: {url[:80]!r}")
    if parts.hostname != urlsplit(endpoint).hostname:
        raise DiscoveryError(f"the answer {url!r} points away from {endpoint}")
    return url


def _registered_size(body: str) -> int:
    """The size the token was made for, from the v2 keys API answer for <token>/_config/size."""
    try:
        return int(json.loads(body)["node"]["value"])
    except (ValueError, KeyError, TypeError):
        raise DiscoveryError(f"the token's size record is not a v2 keys answer: {body[:80]!r}") from None


def new_token(endpoint: str, size: int, *, attempts: int = ATTEMPTS, first_delay: float = FIRST_DELAY_S,
              timeout: float = TIMEOUT_S, sleep: Callable[[float], None] = time.sleep) -> str:
    """Asks the service for a token for `size` members and checks it was made for that size."""
    session = requests.Session()
    try:
        url = _with_retries(
            lambda: _check_token_url(_get(session, f"{endpoint}/new?size={size}", timeout).text, endpoint),
            attempts, first_delay, sleep,
        )
        registered = _registered_size(
            _with_retries(lambda: _get(session, f"{url}/_config/size", timeout).text, attempts, first_delay, sleep)
        )
    except DiscoveryError as error:
        raise DiscoveryError(f"discovery service {endpoint} failed: {error}; {WAY_OUT}") from None
    finally:
        session.close()
    if registered != size:
        raise DiscoveryError(
            f"discovery service {endpoint} made a token for {registered} members, not {size}; {WAY_OUT}"
        )
    return url


def token_id(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


class DiscoveryTokenProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        url = new_token(props["endpoint"], int(props["size"]))
        # A resource id is never secret in Pulumi, so it is a digest of the URL, not the token itself.
        return CreateResult(id_=token_id(url), outs={**props, "url": url})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        # The token lives in state; asking the service again would mint a new one.
        return ReadResult(id_=id_, outs=props)

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=False, replaces=[])


class DiscoveryToken(Resource):
    url: pulumi.Output[str]

    def __init__(self, name: str, endpoint: str, size: int, opts: pulumi.ResourceOptions | None = None):
        super().__init__(DiscoveryTokenProvider(), name, {"endpoint": endpoint, "size": size, "url": None}, opts)
