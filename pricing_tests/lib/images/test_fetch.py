"""Tests of pricing_assets.lib.images.fetch (and its image_bytes / url_safety checks) against a scripted HTTP server on 127.0.0.1."""

from __future__ import annotations

import io
import json
import socket
import struct
import zlib
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image, ImageFile

from pricing_assets.lib.images.decode import ImageRejected, inspect_image_bytes, open_image_rgb, sniff_image_format
from pricing_assets.lib.images.fetch import OUTPUT_COLUMNS, STATUSES, FetchConfig, fetch_images
from pricing_assets.lib.images.url_safety import check_url
from pricing_tests.helpers import IMAGES, SAMPLE
from pricing_tests.http_server import Reply, ScriptedServer

# ------------------------------------------------------------------------------------------
# fixtures and builders
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_rows() -> pd.DataFrame:
    """Three real labeled rows whose photo is bundled, with their original Amazon links."""
    df = pd.read_csv(SAMPLE / "amazon_pricing_sample.csv", dtype={"sample_id": str})
    df["basename"] = df["image_link"].str.rsplit("/", n=1).str[-1]
    bundled = {p.name for p in IMAGES.glob("*.jpg")}
    rows = df[df["basename"].isin(bundled)].head(3).reset_index(drop=True)
    assert len(rows) == 3
    return rows


@pytest.fixture()
def server():
    with ScriptedServer() as srv:
        yield srv


def _cfg(tmp_path: Path, **kw) -> FetchConfig:
    base = dict(
        store_base=str(tmp_path / "store"),
        timeout_s=2.0,
        retries=2,
        backoff_s=0.01,
        concurrency=4,
        allow_private_hosts=True,
    )
    base.update(kw)
    return FetchConfig(**base)


def _frame(*links, ids=None) -> pd.DataFrame:
    ids = ids or [str(i) for i in range(len(links))]
    return pd.DataFrame({"sample_id": ids, "image_link": list(links)})


def _jpeg(size=(40, 20), color=(200, 30, 30), exif_orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", size, color)
    if exif_orientation is None:
        img.save(buf, "JPEG", quality=90)
    else:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        img.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def _png_rgba(size=(16, 12)) -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGBA", size, (0, 0, 0, 0))
    img.putpixel((0, 0), (255, 0, 0, 255))
    img.save(buf, "PNG")
    return buf.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A ~60-byte PNG whose header declares width x height pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def _one(df: pd.DataFrame) -> dict:
    assert len(df) == 1
    return df.iloc[0].to_dict()


# ------------------------------------------------------------------------------------------
# happy path on real photos
# ------------------------------------------------------------------------------------------


def test_real_photos_download_store_and_second_run_makes_no_request(tmp_path, server, real_rows):
    links = []
    for name in real_rows["basename"]:
        links.append(server.route(f"/images/I/{name}", Reply(body=(IMAGES / name).read_bytes())))
    rows = pd.DataFrame({"sample_id": real_rows["sample_id"], "image_link": links})
    cfg = _cfg(tmp_path)
    calls = []

    first = fetch_images(rows, cfg, progress=lambda d, t: calls.append((d, t)))

    assert list(first.columns) == OUTPUT_COLUMNS
    assert len(first) == len(rows)
    assert first["sample_id"].tolist() == real_rows["sample_id"].tolist()
    assert first["status"].tolist() == ["ok"] * 3
    assert first["source"].tolist() == ["download"] * 3
    assert first["reason"].tolist() == [""] * 3
    assert first.attrs["stats"] == {
        "http_requests": 3,
        "downloaded": 3,
        "from_mirror": 0,
        "from_store": 0,
        "connection_failures": 0,
        "hosts_unreachable": [],
    }
    assert calls[-1] == (3, 3) and len(calls) == 3
    for name, (_, r) in zip(real_rows["basename"], first.iterrows()):
        raw = (IMAGES / name).read_bytes()
        with Image.open(IMAGES / name) as im:
            assert (r["width"], r["height"]) == im.size
        assert r["n_bytes"] == len(raw)
        assert r["format"] == "JPEG" and r["mode"] == "RGB" and not r["has_alpha"]
        assert r["aspect_ratio"] == pytest.approx(r["width"] / r["height"])
        # content-addressed: <store>/<sha[:2]>/<sha>.jpg holding exactly the received bytes
        assert r["image_uri"] == str(tmp_path / "store" / r["sha256"][:2] / f"{r['sha256']}.jpg")
        assert Path(r["image_uri"]).read_bytes() == raw
    assert len(list((tmp_path / "store" / "links").glob("*.json"))) == 3
    assert first["width"].dtype == "Int64" and first["has_alpha"].dtype == "boolean"

    hits_before = server.total_hits
    second = fetch_images(rows, cfg)

    assert server.total_hits == hits_before
    assert second.attrs["stats"] == {
        "http_requests": 0,
        "downloaded": 0,
        "from_mirror": 0,
        "from_store": 3,
        "connection_failures": 0,
        "hosts_unreachable": [],
    }
    assert second["source"].tolist() == ["store"] * 3
    pd.testing.assert_frame_equal(second.drop(columns=["source"]), first.drop(columns=["source"]), check_like=False)


def test_output_satisfies_product_images_contract(tmp_path, server):
    from data_contracts.images import ProductImages

    url = server.route("/a.jpg", Reply(body=_jpeg()))
    out = fetch_images(_frame(url, server.url("/gone.jpg"), None, ids=["1", "2", "3"]), _cfg(tmp_path))
    ProductImages.validate(out)
    assert out["status"].tolist() == ["ok", "missing", "missing"]


def test_mirror_hit_makes_no_request_and_is_copied_into_store(tmp_path, server, real_rows):
    name = real_rows["basename"][0]
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / name).write_bytes((IMAGES / name).read_bytes())
    link = server.url(f"/images/I/{name}")  # the server would 404 this path

    out = fetch_images(_frame(link), _cfg(tmp_path, mirror_dir=str(mirror)))

    r = _one(out)
    assert (r["status"], r["source"]) == ("ok", "mirror")
    assert server.total_hits == 0
    assert out.attrs["stats"] == {
        "http_requests": 0,
        "downloaded": 0,
        "from_mirror": 1,
        "from_store": 0,
        "connection_failures": 0,
        "hosts_unreachable": [],
    }
    assert Path(r["image_uri"]).read_bytes() == (IMAGES / name).read_bytes()


def test_mirror_uses_real_amazon_link_basenames_offline(tmp_path, real_rows):
    """Real links (m.media-amazon.com) resolve through the bundled folder with the network off."""
    rows = real_rows[["sample_id", "image_link"]].copy()
    rows.loc[len(rows)] = ["999", "https://m.media-amazon.com/images/I/NOT_BUNDLED.jpg"]
    cfg = _cfg(tmp_path, mirror_dir=str(IMAGES), offline=True, allow_private_hosts=False)

    out = fetch_images(rows, cfg)

    assert out["status"].tolist() == ["ok", "ok", "ok", "missing"]
    assert out["source"].tolist() == ["mirror"] * 3 + [""]
    assert out.loc[3, "reason"] == "offline: not in store or mirror"
    assert out.attrs["stats"]["http_requests"] == 0
    again = fetch_images(rows, cfg)
    assert again["source"].tolist() == ["store"] * 3 + [""]


def test_count_in_equals_out_with_empty_nan_duplicate_and_non_string_links(tmp_path, server):
    url = server.route("/a.jpg", Reply(body=_jpeg()))
    rows = _frame(url, None, float("nan"), "   ", url, 12345, ids=list("abcdef"))

    out = fetch_images(rows, _cfg(tmp_path))

    assert len(out) == 6
    assert out["sample_id"].tolist() == list("abcdef")
    assert out["status"].tolist() == ["ok", "missing", "missing", "missing", "ok", "invalid_url"]
    assert out.loc[1, "reason"] == "empty image_link"
    assert "int" in out.loc[5, "reason"]
    assert out.loc[0, "sha256"] == out.loc[4, "sha256"]
    assert server.hits["/a.jpg"] == 1  # duplicate link fetched once
    assert set(out["status"]) <= set(STATUSES)


def test_missing_columns_raise_naming_them(tmp_path):
    with pytest.raises(KeyError, match="image_link"):
        fetch_images(pd.DataFrame({"sample_id": ["1"]}), _cfg(tmp_path))


def test_empty_input_gives_empty_frame_with_columns(tmp_path):
    out = fetch_images(_frame(), _cfg(tmp_path))
    assert list(out.columns) == OUTPUT_COLUMNS and len(out) == 0


# ------------------------------------------------------------------------------------------
# HTTP failures and retries
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [404, 410])
def test_not_found_is_missing_without_retry(tmp_path, server, code):
    url = server.route("/x.jpg", Reply(status=code, content_type="text/plain", body=b"gone"))
    r = _one(fetch_images(_frame(url), _cfg(tmp_path)))
    assert (r["status"], r["reason"]) == ("missing", f"HTTP {code}")
    assert r["image_uri"] is None and r["sha256"] is None and pd.isna(r["width"])
    assert server.hits["/x.jpg"] == 1


def test_client_error_is_http_error_without_retry(tmp_path, server):
    url = server.route("/x.jpg", Reply(status=403, content_type="text/plain", body=b"no"))
    r = _one(fetch_images(_frame(url), _cfg(tmp_path, retries=3)))
    assert (r["status"], r["reason"]) == ("http_error", "HTTP 403")
    assert server.hits["/x.jpg"] == 1


def test_500_then_200_is_retried_to_success(tmp_path, server):
    url = server.route("/flaky.jpg", Reply(status=500, body=b"oops"), Reply(body=_jpeg()))
    out = fetch_images(_frame(url), _cfg(tmp_path))
    assert _one(out)["status"] == "ok"
    assert server.hits["/flaky.jpg"] == 2
    assert out.attrs["stats"]["http_requests"] == 2


def test_429_is_retried(tmp_path, server):
    url = server.route("/busy.jpg", Reply(status=429), Reply(status=429), Reply(body=_jpeg()))
    assert _one(fetch_images(_frame(url), _cfg(tmp_path, retries=2)))["status"] == "ok"
    assert server.hits["/busy.jpg"] == 3


def test_always_500_gives_up_with_http_error(tmp_path, server):
    url = server.route("/down.jpg", Reply(status=503, body=b"down"))
    r = _one(fetch_images(_frame(url), _cfg(tmp_path, retries=2)))
    assert r["status"] == "http_error"
    assert r["reason"] == "HTTP 503 after 3 attempts"
    assert server.hits["/down.jpg"] == 3


def test_slow_server_times_out_after_retries(tmp_path, server):
    url = server.route("/slow.jpg", Reply(body=_jpeg(), delay_s=1.5))
    r = _one(fetch_images(_frame(url), _cfg(tmp_path, timeout_s=0.2, retries=1)))
    assert r["status"] == "timeout"
    assert "2 attempts" in r["reason"]
    assert server.hits["/slow.jpg"] == 2


def test_connection_refused_is_http_error(tmp_path):
    with ScriptedServer() as srv:
        dead = srv.url("/a.jpg")
    # server closed: nothing listens on that port any more
    r = _one(fetch_images(_frame(dead), _cfg(tmp_path, retries=1)))
    assert r["status"] == "http_error"
    assert r["reason"].startswith("connection error after 2 attempts")


def test_redirect_is_followed_and_each_hop_counted(tmp_path, server):
    target = server.route("/real.jpg", Reply(body=_jpeg()))
    url = server.route("/r", Reply(status=302, content_type=None, headers={"Location": "/real.jpg"}))
    out = fetch_images(_frame(url), _cfg(tmp_path))
    assert _one(out)["status"] == "ok"
    assert out.attrs["stats"]["http_requests"] == 2
    assert server.hits["/real.jpg"] == 1 and target.endswith("/real.jpg")


def test_redirect_to_file_scheme_is_refused(tmp_path, server):
    url = server.route("/r", Reply(status=301, headers={"Location": "file:///etc/passwd"}))
    r = _one(fetch_images(_frame(url), _cfg(tmp_path)))
    assert r["status"] == "invalid_url" and "'file'" in r["reason"]


# ------------------------------------------------------------------------------------------
# per-host circuit breaker
# ------------------------------------------------------------------------------------------

DEAD_HOST = "img.pricing-test.invalid"  # RFC 6761: names under .invalid never resolve


@pytest.fixture()
def dns_lookups(monkeypatch) -> list[str]:
    """Every ``socket.getaddrinfo`` call for a ``.invalid`` name, recorded (the lookup still runs)."""
    calls: list[str] = []
    real = socket.getaddrinfo

    def counting(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".invalid"):
            calls.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    return calls


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("concurrency", [1, 8])
def test_unresolvable_host_opens_breaker_without_backoff_retries(tmp_path, dns_lookups, concurrency):
    from data_contracts.images import ProductImages

    links = [f"http://{DEAD_HOST}/images/I/{i}.jpg" for i in range(50)]
    cfg = _cfg(tmp_path, allow_private_hosts=False, retries=3, concurrency=concurrency)

    out = fetch_images(_frame(*links), cfg)

    counts = out["status"].value_counts().to_dict()
    # the first threshold-1 failures leave the breaker closed: those links end as http_error,
    # each after one lookup (a name that does not resolve is not retried); the rest are cut off
    assert counts == {"host_unreachable": 48, "http_error": 2}
    assert out.attrs["stats"]["http_requests"] == 0
    assert out.attrs["stats"]["hosts_unreachable"] == [DEAD_HOST]
    # without the breaker: 50 links x 4 attempts = 200 lookups (and backoff sleeps between them)
    assert 3 <= len(dns_lookups) <= 3 + concurrency - 1
    assert out.attrs["stats"]["connection_failures"] == len(dns_lookups)
    errors = out[out["status"] == "http_error"]
    assert errors["reason"].str.startswith("connection error (name does not resolve, not retried)").all()
    cut = out[out["status"] == "host_unreachable"]
    assert cut["reason"].str.contains(f"host '{DEAD_HOST}' unreachable", regex=False).all()
    assert cut["reason"].str.contains("cannot resolve host", regex=False).all()  # the last error
    assert (cut["reason"].str.endswith("link not requested")).sum() >= 50 - 2 - concurrency
    assert not (tmp_path / "store" / "links").exists()
    ProductImages.validate(out)
    if concurrency == 1:  # one worker takes links in order: exactly threshold lookups
        assert len(dns_lookups) == 3
        assert out["status"].tolist() == ["http_error"] * 2 + ["host_unreachable"] * 48


def test_refused_connections_open_breaker_and_stop_retries(tmp_path):
    port = _closed_port()
    links = [f"http://127.0.0.1:{port}/{i}.jpg" for i in range(20)]

    out = fetch_images(_frame(*links), _cfg(tmp_path, retries=2, concurrency=4))

    # every link either opens the breaker with its own 3rd failure or is cut off when it retries
    assert out["status"].tolist() == ["host_unreachable"] * 20
    assert out.attrs["stats"]["hosts_unreachable"] == ["127.0.0.1"]
    assert 3 <= out.attrs["stats"]["connection_failures"] <= 3 + 4 - 1  # not 20 x 3 attempts
    assert out["reason"].str.contains("ConnectError", regex=False).all()
    assert not (tmp_path / "store" / "links").exists()


def test_refused_connections_below_threshold_then_breaker_in_link_order(tmp_path):
    port = _closed_port()
    links = [f"http://127.0.0.1:{port}/{i}.jpg" for i in range(6)]

    out = fetch_images(_frame(*links), _cfg(tmp_path, retries=0, concurrency=1, host_failure_threshold=3))

    assert out["status"].tolist() == ["http_error"] * 2 + ["host_unreachable"] * 4
    assert out.loc[0, "reason"].startswith("connection error after 1 attempts")
    assert "link not requested" not in out.loc[2, "reason"]  # its own failure opened the breaker
    assert out.loc[3, "reason"].endswith("link not requested")
    assert out.attrs["stats"]["connection_failures"] == 3


def test_http_errors_do_not_open_breaker(tmp_path, server):
    down = [server.route(f"/down{i}.jpg", Reply(status=503, body=b"down")) for i in range(5)]
    good = [server.route(f"/ok{i}.jpg", Reply(body=_jpeg())) for i in range(5)]

    out = fetch_images(_frame(*down, *good), _cfg(tmp_path, retries=2, concurrency=4, host_failure_threshold=1))

    assert out["status"].tolist() == ["http_error"] * 5 + ["ok"] * 5
    assert (out["reason"][:5] == "HTTP 503 after 3 attempts").all()
    assert sum(server.hits[f"/down{i}.jpg"] for i in range(5)) == 15
    assert out.attrs["stats"]["connection_failures"] == 0
    assert out.attrs["stats"]["hosts_unreachable"] == []


def test_an_answer_resets_the_consecutive_failure_count(tmp_path, server):
    """Dead port and live server share the host 127.0.0.1: 2 failures, an answer, 2 failures."""
    port = _closed_port()
    dead = [f"http://127.0.0.1:{port}/{i}.jpg" for i in range(4)]
    live = [server.route(f"/ok{i}.jpg", Reply(body=_jpeg(color=(i, 0, 0)))) for i in range(2)]
    rows = _frame(dead[0], dead[1], live[0], dead[2], dead[3], live[1])

    out = fetch_images(rows, _cfg(tmp_path, retries=0, concurrency=1, host_failure_threshold=3))

    assert out["status"].tolist() == ["http_error", "http_error", "ok", "http_error", "http_error", "ok"]
    assert out.attrs["stats"]["connection_failures"] == 4
    assert out.attrs["stats"]["hosts_unreachable"] == []


def test_threshold_zero_disables_breaker_and_retries_dns(tmp_path, dns_lookups):
    links = [f"http://{DEAD_HOST}/{i}.jpg" for i in range(10)]
    cfg = _cfg(tmp_path, allow_private_hosts=False, retries=2, backoff_s=0.001, host_failure_threshold=0)

    out = fetch_images(_frame(*links), cfg)

    assert out["status"].tolist() == ["http_error"] * 10
    assert out["reason"].str.startswith("connection error after 3 attempts").all()
    assert len(dns_lookups) == 30
    assert out.attrs["stats"]["hosts_unreachable"] == []


def test_unreachable_host_is_tried_again_on_next_call(tmp_path):
    port = _closed_port()
    paths = [f"/{i}.jpg" for i in range(5)]
    rows = _frame(*[f"http://127.0.0.1:{port}{p}" for p in paths])
    cfg = _cfg(tmp_path, retries=0, concurrency=1)

    first = fetch_images(rows, cfg)
    assert first["status"].tolist() == ["http_error"] * 2 + ["host_unreachable"] * 3
    assert not (tmp_path / "store" / "links").exists()  # no record: nothing remembers the failure

    with ScriptedServer(port=port) as srv:  # the host comes back
        for p in paths:
            srv.route(p, Reply(body=_jpeg()))
        second = fetch_images(rows, cfg)
        assert srv.total_hits == 5

    assert second["status"].tolist() == ["ok"] * 5
    assert second["source"].tolist() == ["download"] * 5
    assert second.attrs["stats"]["hosts_unreachable"] == []


def test_fetch_config_rejects_negative_threshold(tmp_path):
    with pytest.raises(ValueError, match="host_failure_threshold"):
        FetchConfig(store_base=str(tmp_path), host_failure_threshold=-1)


# ------------------------------------------------------------------------------------------
# content checks
# ------------------------------------------------------------------------------------------


def test_html_body_is_not_image(tmp_path, server):
    url = server.route("/p.jpg", Reply(body=b"<html>captcha</html>", content_type="text/html; charset=utf-8"))
    r = _one(fetch_images(_frame(url), _cfg(tmp_path)))
    assert r["status"] == "not_image" and "text/html" in r["reason"]


def test_image_content_type_with_non_image_bytes_is_not_image(tmp_path, server):
    url = server.route("/p.jpg", Reply(body=b"<html>not really</html>", content_type="image/jpeg"))
    r = _one(fetch_images(_frame(url), _cfg(tmp_path)))
    assert r["status"] == "not_image" and "magic bytes" in r["reason"]


def test_magic_bytes_decide_format_when_content_type_lies(tmp_path, server):
    """JPEG bytes served as image/png from a .png link: accepted as JPEG, stored as .jpg."""
    url = server.route("/p.png", Reply(body=_jpeg(), content_type="image/png"))
    r = _one(fetch_images(_frame(url), _cfg(tmp_path)))
    assert (r["status"], r["format"]) == ("ok", "JPEG")
    assert r["image_uri"].endswith(".jpg")


def test_png_with_alpha_and_octet_stream_content_type(tmp_path, server):
    url = server.route("/t.png", Reply(body=_png_rgba(), content_type="application/octet-stream"))
    r = _one(fetch_images(_frame(url), _cfg(tmp_path)))
    assert (r["status"], r["format"], r["mode"], r["has_alpha"]) == ("ok", "PNG", "RGBA", True)
    rgb = open_image_rgb(r["image_uri"])
    assert rgb.mode == "RGB"
    assert rgb.getpixel((5, 5)) == (255, 255, 255)  # transparent -> white, not black
    assert rgb.getpixel((0, 0)) == (255, 0, 0)


def test_truncated_jpeg_is_corrupt(tmp_path, server, real_rows):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    raw = (IMAGES / real_rows["basename"][0]).read_bytes()
    url = server.route("/half.jpg", Reply(body=raw[: len(raw) // 2]))
    r = _one(fetch_images(_frame(url), _cfg(tmp_path)))
    assert r["status"] == "corrupt" and "truncated" in r["reason"]
    assert not (tmp_path / "store" / "links").exists()  # failures leave no index record


def test_zero_byte_body_is_corrupt(tmp_path, server):
    url = server.route("/empty.jpg", Reply(body=b""))
    r = _one(fetch_images(_frame(url), _cfg(tmp_path)))
    assert (r["status"], r["reason"]) == ("corrupt", "empty body (0 bytes)")


def test_oversize_body_is_too_large_by_content_length(tmp_path, server, real_rows):
    raw = (IMAGES / real_rows["basename"][0]).read_bytes()
    url = server.route("/big.jpg", Reply(body=raw))
    r = _one(fetch_images(_frame(url), _cfg(tmp_path, max_bytes=len(raw) - 1)))
    assert r["status"] == "too_large" and "Content-Length" in r["reason"]


def test_oversize_body_without_length_is_cut_while_streaming(tmp_path, server):
    url = server.route("/big.jpg", Reply(body=b"\xff\xd8\xff" + b"\x00" * 200_000, send_length=False))
    r = _one(fetch_images(_frame(url), _cfg(tmp_path, max_bytes=50_000)))
    assert r["status"] == "too_large" and "stopped reading" in r["reason"]


def test_pixel_cap_rejects_small_file_with_many_pixels(tmp_path, server):
    buf = io.BytesIO()
    Image.new("L", (3000, 3000), 255).save(buf, "PNG")
    assert len(buf.getvalue()) < 50_000
    url = server.route("/wide.png", Reply(body=buf.getvalue(), content_type="image/png"))
    r = _one(fetch_images(_frame(url), _cfg(tmp_path, max_pixels=1_000_000)))
    assert r["status"] == "too_large" and "9000000 pixels > max_pixels 1000000" in r["reason"]


def test_real_decompression_bomb_header_is_too_large(tmp_path, server):
    bomb = _png_declaring(200_000, 200_000)  # 4e10 pixels in ~70 bytes
    assert len(bomb) < 100
    url = server.route("/bomb.png", Reply(body=bomb, content_type="image/png"))
    r = _one(fetch_images(_frame(url), _cfg(tmp_path)))
    assert r["status"] == "too_large"


def test_exif_rotated_image_reports_and_opens_transposed(tmp_path, server):
    url = server.route("/rot.jpg", Reply(body=_jpeg(size=(40, 20), exif_orientation=6)))
    r = _one(fetch_images(_frame(url), _cfg(tmp_path)))
    assert (r["status"], r["width"], r["height"]) == ("ok", 20, 40)
    assert r["aspect_ratio"] == pytest.approx(0.5)
    img = open_image_rgb(r["image_uri"])
    assert img.size == (20, 40) and img.mode == "RGB"
    with Image.open(r["image_uri"]) as raw:  # stored bytes untouched (content address = source bytes)
        assert raw.size == (40, 20)


# ------------------------------------------------------------------------------------------
# URL safety
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "link",
    ["file:///etc/passwd", "ftp://example.com/a.jpg", "javascript:alert(1)", "//no-scheme/a.jpg", "http:///a.jpg"],
)
def test_non_http_links_are_invalid_and_never_requested(tmp_path, link):
    out = fetch_images(_frame(link), _cfg(tmp_path))
    assert _one(out)["status"] == "invalid_url"
    assert out.attrs["stats"]["http_requests"] == 0


def test_loopback_refused_unless_allowed(tmp_path, server):
    url = server.route("/a.jpg", Reply(body=_jpeg()))
    local_name = url.replace("127.0.0.1", "localhost")

    out = fetch_images(_frame(url, local_name), _cfg(tmp_path, allow_private_hosts=False))

    assert out["status"].tolist() == ["invalid_url", "invalid_url"]
    assert "127.0.0.1" in out.loc[0, "reason"] and "allow_private_hosts" in out.loc[0, "reason"]
    assert server.total_hits == 0 and out.attrs["stats"]["http_requests"] == 0
    assert _one(fetch_images(_frame(url), _cfg(tmp_path, allow_private_hosts=True)))["status"] == "ok"


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.7/a.jpg",
        "http://192.168.1.1/a.jpg",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata endpoint
        "http://[::1]/a.jpg",
        "http://[::ffff:127.0.0.1]/a.jpg",
        "http://0.0.0.0/a.jpg",
    ],
)
def test_check_url_refuses_private_addresses(url):
    with pytest.raises(ImageRejected) as info:
        check_url(url, allow_private_hosts=False)
    assert info.value.status == "invalid_url"


def test_check_url_accepts_public_ip_literal():
    assert (
        check_url("https://8.8.8.8/a.jpg", allow_private_hosts=False) is None
    )  # raises ImageRejected if refused; literal: no DNS


# ------------------------------------------------------------------------------------------
# small pure helpers, store behaviour, S3
# ------------------------------------------------------------------------------------------


def test_sniff_image_format_signatures():
    assert sniff_image_format(_jpeg()) == "JPEG"
    assert sniff_image_format(_png_rgba()) == "PNG"
    assert sniff_image_format(b"GIF89a....") == "GIF"
    assert sniff_image_format(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "WEBP"
    assert sniff_image_format(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None
    assert sniff_image_format(b"") is None


def test_inspect_image_bytes_errors_carry_status():
    with pytest.raises(ImageRejected) as info:
        inspect_image_bytes(b"%PDF-1.7", max_bytes=100, max_pixels=100)
    assert info.value.status == "not_image"
    meta = inspect_image_bytes(_jpeg(size=(30, 10)), max_bytes=10_000, max_pixels=300)
    assert (meta["width"], meta["height"], meta["format"], meta["ext"]) == (30, 10, "JPEG", "jpg")


def test_broken_link_record_is_ignored_and_rewritten(tmp_path, server):
    url = server.route("/a.jpg", Reply(body=_jpeg()))
    cfg = _cfg(tmp_path)
    first = fetch_images(_frame(url), cfg)
    (record,) = (tmp_path / "store" / "links").glob("*.json")
    record.write_text("{not json")

    again = fetch_images(_frame(url), cfg)

    assert _one(again)["source"] == "download"
    assert json.loads(record.read_text())["sha256"] == first.loc[0, "sha256"]


def test_failed_links_are_retried_on_next_run(tmp_path, server):
    url = server.route("/late.jpg", Reply(status=404), Reply(body=_jpeg()))
    cfg = _cfg(tmp_path)
    assert _one(fetch_images(_frame(url), cfg))["status"] == "missing"
    assert _one(fetch_images(_frame(url), cfg))["status"] == "ok"


def test_fetch_config_validation(tmp_path):
    with pytest.raises(ValueError, match="timeout_s"):
        FetchConfig(store_base=str(tmp_path), timeout_s=0)
    with pytest.raises(ValueError, match="store_base"):
        FetchConfig(store_base="")


def test_s3_store_on_moto(tmp_path, server):
    pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        opts = {"key": "test", "secret": "test", "endpoint_url": f"http://{host}:{port}"}
        fs = s3fs.S3FileSystem(**opts)
        fs.mkdir("bucket")
        url = server.route("/a.jpg", Reply(body=_jpeg(size=(24, 12))))
        cfg = _cfg(tmp_path, store_base="s3://bucket/images", storage_options=opts)

        first = _one(fetch_images(_frame(url), cfg))
        again = fetch_images(_frame(url), cfg)

        assert first["status"] == "ok"
        assert first["image_uri"] == f"s3://bucket/images/{first['sha256'][:2]}/{first['sha256']}.jpg"
        assert _one(again)["source"] == "store" and again.attrs["stats"]["http_requests"] == 0
        assert open_image_rgb(first["image_uri"], storage_options=opts).size == (24, 12)
        assert len(fs.ls("bucket/images/links")) == 1
    finally:
        moto.stop()


def test_bundled_truncated_photo_is_reported_corrupt(tmp_path):
    """81cDZz+v6sL.jpg in the bundled sample is a real partial download (exactly 24 KiB)."""
    rows = _frame(
        "https://m.media-amazon.com/images/I/81cDZz+v6sL.jpg",
        "https://m.media-amazon.com/images/I/617LyMgoMJL.jpg",
    )
    out = fetch_images(rows, _cfg(tmp_path, mirror_dir=str(IMAGES), offline=True))
    assert out["status"].tolist() == ["corrupt", "ok"]
    assert out.loc[0, "source"] == "mirror"
    assert out.loc[0, "reason"].startswith("mirror file 81cDZz+v6sL.jpg: Pillow cannot decode JPEG")
    assert out.loc[0, "image_uri"] is None
