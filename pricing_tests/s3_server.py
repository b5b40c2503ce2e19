"""A local S3 server for tests: moto's ``ThreadedMotoServer`` bound to 127.0.0.1 on a free port.

Usage (pytest)::

    from pricing_tests.s3_server import s3_env  # fixture: {"endpoint": url, "bucket": name}

The fixture sets fake ``AWS_*`` credentials through ``monkeypatch`` (so nothing real is ever used),
creates a fresh bucket per test and clears s3fs's instance cache so no client survives its server.
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


@pytest.fixture(scope="session")
def s3_endpoint():
    """Endpoint URL of one moto server shared by the session."""
    with moto_server() as url:
        yield url


@pytest.fixture()
def s3_env(s3_endpoint, monkeypatch):
    """Fake credentials in the environment, a new empty bucket: ``{"endpoint", "bucket", "fs"}``."""
    import s3fs

    for k, v in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    bucket = f"pricing-{uuid.uuid4().hex[:10]}"
    fs.mkdir(bucket)
    yield {"endpoint": s3_endpoint, "bucket": bucket, "fs": fs}
    s3fs.S3FileSystem.clear_instance_cache()
