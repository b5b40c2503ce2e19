"""A local S3 server for tests: moto's ``ThreadedMotoServer`` bound to 127.0.0.1 on a free port.

Usage (pytest)::

    from pricing_tests.s3_server import s3_env  # fixture: {"endpoint": url, "bucket": name}

The fixture sets fake ``AWS_*`` credentials through ``monkeypatch`` (so nothing real is ever used),
creates a fresh bucket per test and clears s3fs's instance cache so no client survives its server.

``restartable_s3`` gives a test its own server that it can stop and start again on the same port
(an endpoint going down and coming back); its buckets survive the restart (moto keeps its state in
the test process).
"""

import uuid
from contextlib import contextmanager

import pytest

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def moto_server():
    """Start moto's S3 server on ``127.0.0.1:<free port>``; yields its endpoint URL (``http://…``)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


class RestartableMotoServer:
    """moto's S3 server on ``127.0.0.1``; :meth:`stop` and :meth:`start` again keep the port."""

    def __init__(self) -> None:
        self.port: int | None = None
        self._server = None

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>`` (the port is chosen at the first :meth:`start`)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start serving (a free port the first time, the same port afterwards)."""
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port or 0, verbose=False)
        server.start()
        self.port = server.get_host_and_port()[1]
        self._server = server

    def stop(self) -> None:
        """Stop serving: connections to the port are refused until :meth:`start`."""
        if self._server is not None:
            self._server.stop()
            self._server = None


def _fake_credentials(monkeypatch) -> None:
    for k, v in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@pytest.fixture()
def restartable_s3(monkeypatch):
    """A test's own moto server (started) with a new bucket: ``{"server", "endpoint", "bucket", "fs"}``."""
    import s3fs

    _fake_credentials(monkeypatch)
    server = RestartableMotoServer()
    server.start()
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem(endpoint_url=server.endpoint)
    bucket = f"pricing-{uuid.uuid4().hex[:10]}"
    fs.mkdir(bucket)
    try:
        yield {"server": server, "endpoint": server.endpoint, "bucket": bucket, "fs": fs}
    finally:
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="session")
def s3_endpoint():
    """Endpoint URL of one moto server shared by the session."""
    with moto_server() as url:
        yield url


@pytest.fixture()
def s3_env(s3_endpoint, monkeypatch):
    """Fake credentials in the environment, a new empty bucket: ``{"endpoint", "bucket", "fs"}``."""
    import s3fs

    _fake_credentials(monkeypatch)
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    bucket = f"pricing-{uuid.uuid4().hex[:10]}"
    fs.mkdir(bucket)
    yield {"endpoint": s3_endpoint, "bucket": bucket, "fs": fs}
    s3fs.S3FileSystem.clear_instance_cache()
