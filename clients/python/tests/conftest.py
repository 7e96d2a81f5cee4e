"""A real `auditrail serve` (the binary AUDITRAIL_BIN names) on a data dir of its own."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.request
from typing import Iterator, Optional

import pytest

ADMIN = "client-test-platform-admin"


class Server:
    def __init__(self, binary: str):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="auditrail-py-")
        self.listen = "127.0.0.1:0"
        self.child: Optional[subprocess.Popen] = None
        self.url = ""

    def start(self) -> "Server":
        env = {**os.environ, "AUDITRAIL_ADMIN_TOKEN": ADMIN, "AUDITRAIL_LOG": "warn"}
        self.child = subprocess.Popen(
            [self.binary, "serve", "--listen", self.listen, "--data-dir", self.dir],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.child.stdout is not None
        first = self.child.stdout.readline().strip()
        prefix = "auditrail listening on "
        assert first.startswith(prefix), first
        self.url = first[len(prefix) :]
        self.listen = self.url.split("//", 1)[1]
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        assert self.child is not None
        self.child.send_signal(signal.SIGKILL)
        self.child.wait()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def post(self, path: str, token: str, body: dict) -> dict:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST")
        req.add_header("authorization", f"Bearer {token}")
        req.add_header("content-type", "application/json")
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())

    def org_key(self, org: str, role: str = "admin") -> str:
        self.post("/v1/orgs", ADMIN, {"id": org})
        return self.post(f"/v1/orgs/{org}/keys", ADMIN, {"name": "client", "role": role})["token"]


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    binary = os.environ.get("AUDITRAIL_BIN")
    if not binary:
        if os.environ.get("AUDITRAIL_REQUIRE_CLIENTS"):
            raise RuntimeError("AUDITRAIL_BIN must name the auditrail binary")
        pytest.skip("AUDITRAIL_BIN is not set (the auditrail binary)")
    s = Server(binary).start()
    yield s
    s.stop()
