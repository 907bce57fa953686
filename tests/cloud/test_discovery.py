"""The DiscoveryToken provider against a small discovery service on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from etcd_stack.cloud import discovery
from etcd_stack.cloud.discovery import DiscoveryError, DiscoveryTokenProvider, token_id

TOKEN = "3e86b59982e49066c5d813af1c2e2579cbf573de"


@dataclass
class Script:
    """What the fake service answers: a queue of (status, body) for /new, then the token's size."""

    new: list[tuple[int, str]] = field(default_factory=list)
    size: int = 3
    delay_s: float = 0.0
    paths: list[str] = field(default_factory=list)


@pytest.fixture
def service() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            script.paths.append(self.path)
            time.sleep(script.delay_s)
            if self.path.startswith("/new?size="):
                status, body = script.new.pop(0) if script.new else (200, f"{base}/{TOKEN}")
            elif self.path == f"/{TOKEN}/_config/size":
                status, body = 200, json.dumps({"action": "get", "node": {
                    "key": f"/_etcd/registry/{TOKEN}/_config/size", "value": str(script.size)}})
            else:
                status, body = 404, "not found"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base, script
    server.shutdown()
    server.server_close()


def mint(endpoint: str, size: int = 3, **overrides) -> str:
    options = {"attempts": 3, "first_delay": 0.01, "timeout": 1.0, **overrides}
    return discovery.new_token(endpoint, size, **options)


def test_a_token_is_minted_for_the_cluster_size(service):
    base, script = service
    assert mint(base) == f"{base}/{TOKEN}"
    assert script.paths == ["/new?size=3", f"/{TOKEN}/_config/size"]


def test_a_5xx_is_retried_with_backoff_until_the_service_answers(service):
    base, script = service
    script.new = [(503, "unavailable"), (502, "bad gateway")]
    sleeps: list[float] = []
    assert mint(base, sleep=sleeps.append) == f"{base}/{TOKEN}"
    assert script.paths[:3] == ["/new?size=3"] * 3
    assert sleeps == [0.01, 0.02]


def test_a_service_that_keeps_failing_names_the_failure_and_the_way_out(service):
    base, script = service
    script.new = [(503, "unavailable")] * 3
    with pytest.raises(DiscoveryError) as caught:
        mint(base, sleep=lambda _: None)
    message = str(caught.value)
    assert f"discovery service {base} failed: HTTP 503 after 3 attempts" in message
    assert "set etcd:bootstrap to 'static'" in message
    assert len(script.paths) == 3


def test_a_client_error_is_not_retried(service):
    base, script = service
    script.new = [(400, "bad size")]
    with pytest.raises(DiscoveryError, match="failed: HTTP 400;"):
        mint(base)
    assert script.paths == ["/new?size=3"]


def test_a_malformed_answer_is_refused(service):
    base, script = service
    script.new = [(200, "<html>Service Temporarily Unavailable</html>")]
    with pytest.raises(DiscoveryError, match="the answer is not a discovery URL: '<html>"):
        mint(base)


def test_an_answer_pointing_elsewhere_is_refused(service):
    base, script = service
    script.new = [(200, f"https://attacker.example/{TOKEN}")]
    with pytest.raises(DiscoveryError, match="points away from"):
        mint(base)


def test_a_token_made_for_another_size_is_refused(service):
    base, script = service
    script.size = 5
    with pytest.raises(DiscoveryError, match="made a token for 5 members, not 3; set etcd:bootstrap to 'static'"):
        mint(base)


def test_a_silent_service_times_out_and_says_so(service):
    base, script = service
    script.delay_s = 0.5
    started = time.monotonic()
    with pytest.raises(DiscoveryError, match=r"no answer within 0\.2s after 2 attempts"):
        mint(base, attempts=2, timeout=0.2)
    assert time.monotonic() - started < 5


def test_nothing_listening_is_a_connection_failure():
    with pytest.raises(DiscoveryError, match="could not connect"):
        mint("http://127.0.0.1:9", attempts=2)


class TestProvider:
    def test_create_keeps_the_url_in_its_outputs(self, service):
        base, _ = service
        result = DiscoveryTokenProvider().create({"endpoint": base, "size": 3})
        assert result.outs == {"endpoint": base, "size": 3, "url": f"{base}/{TOKEN}"}
        assert result.id == token_id(f"{base}/{TOKEN}") and TOKEN not in result.id

    def test_read_never_asks_the_service_again(self, service):
        base, script = service
        outs = {"endpoint": base, "size": 3, "url": f"{base}/{TOKEN}"}
        assert DiscoveryTokenProvider().read(TOKEN, outs).outs == outs
        assert script.paths == []

    def test_the_token_is_never_replaced_once_minted(self):
        provider = DiscoveryTokenProvider()
        olds = {"endpoint": "https://discovery.etcd.io", "size": 3, "url": f"https://discovery.etcd.io/{TOKEN}"}
        same = provider.diff(TOKEN, olds, {"endpoint": "https://discovery.etcd.io", "size": 3, "url": None})
        assert not same.changes and not same.replaces
        bigger = provider.diff(TOKEN, olds, {**olds, "size": 5})
        assert not bigger.changes and not bigger.replaces
        moved = provider.diff(TOKEN, olds, {**olds, "endpoint": "https://d.example"})
        assert not moved.changes and not moved.replaces
