"""Bad input at the asset level: real sample rows turned bad, materialised through Dagster.

The unit tests of ``read_catalog`` and ``fetch_images`` (pricing_tests/lib/) prove each rule of the
pure functions; this suite proves what an operator sees: the run materialises ``raw_catalog`` /
``catalog_quarantine`` / ``catalog_items`` / ``product_images`` in process on an ephemeral instance
with tmp storage, every bad row comes out as a quarantine record or an image status with a reason
(in the asset output *and* its metadata), counts reconcile, whole-file problems fail the step with a
message naming file and line/column, and a contract failure stops the downstream assets.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pricing_assets.defs import images as images_assets
from pricing_assets.defs import ingest as ingest_assets
from pricing_assets.defs.resources import build_resources
from pricing_assets.lib.catalog.batches import store_batch
from pricing_assets.partitions import CATALOG_BATCHES
from pricing_assets.resources import ImageFetchResource, OcrResource
from pricing_assets.settings import Settings
from pricing_tests.helpers import IMAGES, LABELED_CSV, UNLABELED_CSV
from pricing_tests.http_server import Reply, ScriptedServer

ASSETS = [ingest_assets.raw_catalog, ingest_assets.catalog_items, images_assets.product_images]


# ------------------------------------------------------------------------------------------------
# harness
# ------------------------------------------------------------------------------------------------


class Harness:
    """Ephemeral instance + tmp storage; ``run(batch_file, select)`` stores the file as a batch,
    registers the partition and materialises ``select`` for it (never raises on step failure)."""

    def __init__(self, root: Path, **image_fetch):
        self.settings = Settings(
            home=str(root / "home"),
            storage=str(root / "storage"),
            s3_endpoint=None,
            device="cpu",
            image_mirror=None,
            images_offline=False,
            ocr_backend="rapidocr",
            inbox=str(root / "inbox"),
        )
        self.resources = build_resources(self.settings)
        self.resources["image_fetch"] = ImageFetchResource(
            mirror_dir=None, **{"timeout_s": 5.0, "concurrency": 4, **image_fetch}
        )
        self.resources["ocr"] = OcrResource(enabled=False)
        self.instance = dg.DagsterInstance.ephemeral()

    def run(
        self, path: Path | str, batch: str, select=("raw_catalog", "catalog_quarantine", "catalog_items"), assets=ASSETS
    ):
        store_batch(str(path), self.resources["storage"].batches_dir(), batch)
        if not self.instance.has_dynamic_partition(CATALOG_BATCHES, batch):
            self.instance.add_dynamic_partitions(CATALOG_BATCHES, [batch])
        return dg.materialize(
            assets,
            instance=self.instance,
            resources=self.resources,
            partition_key=batch,
            selection=list(select),
            raise_on_error=False,
        )


def mat_metadata(result, asset_key: str) -> dict:
    """``{name: value}`` of the run's materialisation of ``asset_key``."""
    mats = [m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey(asset_key)]
    assert len(mats) == 1, f"expected one materialisation of {asset_key}, got {len(mats)}"
    return {k: v.value for k, v in mats[0].materialization.metadata.items()}


def materialised(result) -> set[str]:
    return {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}


def step_errors(result) -> list[str]:
    return [e.event_specific_data.error.to_string() for e in result.all_events if e.is_step_failure]


def real_rows(n: int, labeled: bool = True) -> pd.DataFrame:
    src = LABELED_CSV if labeled else UNLABELED_CSV
    return pd.read_csv(src, dtype=str, keep_default_na=False).head(n).reset_index(drop=True)


@pytest.fixture()
def h(tmp_path) -> Harness:
    return Harness(tmp_path)


# ------------------------------------------------------------------------------------------------
# row-level problems: quarantine with a reason, counts reconcile, good rows flow downstream
# ------------------------------------------------------------------------------------------------

# data row number (1-based) -> (field, reason fragment) for the dirty labeled batch below
DIRTY_EXPECTED = {
    3: ("sample_id", "duplicate sample_id, first seen at row 1"),
    4: ("catalog_content", "empty or whitespace"),
    5: ("catalog_content", "empty or whitespace"),
    6: ("catalog_content", "too long: 100000 chars"),
    7: ("price", "price missing"),
    8: ("price", "price is zero"),
    9: ("price", "price is negative"),
    10: ("price", "price non-numeric"),
    11: ("price", "price absurd"),
    12: ("sample_id", "missing or empty sample_id"),
    13: ("catalog_content", "non-UTF-8 bytes"),
}


def dirty_labeled_csv(path: Path) -> int:
    """Write 20 real labeled rows where rows 3-13 are broken as in ``DIRTY_EXPECTED``; returns 20."""
    df = real_rows(20)
    df.loc[2, "sample_id"] = df.loc[0, "sample_id"]  # duplicate of row 1
    df.loc[3, "catalog_content"] = ""
    df.loc[4, "catalog_content"] = "   \t  "
    df.loc[5, "catalog_content"] = "Item Name: " + "x" * (100_000 - len("Item Name: "))  # 100 kB text
    df.loc[6, "price"] = ""
    df.loc[7, "price"] = "0"
    df.loc[8, "price"] = "-3.99"
    df.loc[9, "price"] = "twelve dollars"
    df.loc[10, "price"] = "1e9"
    df.loc[11, "sample_id"] = "  "
    df["extra_note"] = "scraped 2025-10"  # an extra column: kept out, reported
    data = df.to_csv(index=False).encode("utf-8")
    # row 13: a Latin-1 byte inside catalog_content (invalid UTF-8)
    needle = df.loc[12, "catalog_content"][:30].encode("utf-8")
    assert data.count(needle) == 1
    data = data.replace(needle, needle[:10] + b"\xe9\xff" + needle[10:])
    path.write_bytes(data)
    return len(df)


def test_dirty_rows_are_quarantined_with_reasons_and_counts_reconcile(h, tmp_path):
    n_in = dirty_labeled_csv(tmp_path / "dirty.csv")
    res = h.run(tmp_path / "dirty.csv", "dirty")
    assert res.success, step_errors(res)

    rows = res.output_for_node("raw_catalog", "raw_catalog")
    quarantine = res.output_for_node("raw_catalog", "catalog_quarantine")
    items = res.output_for_node("catalog_items")

    # every broken row quarantined once, for the right field and reason; nothing else
    got = {int(r.row): (r.field, r.reason) for r in quarantine.itertuples()}
    assert sorted(got) == sorted(DIRTY_EXPECTED)
    for row, (fld, frag) in DIRTY_EXPECTED.items():
        assert got[row][0] == fld, (row, got[row])
        assert frag in got[row][1], (row, got[row])
    assert set(quarantine["source"]) == {rows["source"].iloc[0]}
    assert rows["source"].iloc[0].endswith("batches/dirty/dirty.csv")
    # the offending value is kept (truncated to 200 chars) so the operator sees it
    assert quarantine.set_index("row").loc[10, "value"] == "twelve dollars"
    assert len(quarantine.set_index("row").loc[6, "value"]) == 200

    # counts reconcile: rows in = rows out + quarantined, and downstream parses every good row
    assert len(rows) + len(quarantine) == n_in == 20
    assert len(items) == len(rows) == 9
    assert list(items["sample_id"]) == list(rows["sample_id"])
    assert rows["price"].gt(0).all() and rows["sample_id"].is_unique

    meta = mat_metadata(res, "raw_catalog")
    assert (meta["rows_in"], meta["rows"], meta["quarantined_rows"]) == (20, 9, 11)
    assert meta["extra_columns"] == "extra_note"
    qmeta = mat_metadata(res, "catalog_quarantine")
    assert qmeta["rows"] == 11
    assert qmeta["reasons"]["empty or whitespace catalog_content"] == 2
    assert "twelve dollars" in qmeta["preview"]
    assert mat_metadata(res, "catalog_items")["rows"] == 9

    # the quarantine is a stored asset, readable later like any other
    checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in res.get_asset_check_evaluations()}
    assert checks == {
        ("raw_catalog", "contract"): True,
        ("catalog_quarantine", "contract"): True,
        ("catalog_items", "contract"): True,
    }


def test_wrong_dtypes_in_parquet_are_coerced_or_quarantined(h, tmp_path):
    """Parquet with integer sample_ids and prices stored as text (some not numbers)."""
    df = real_rows(8)
    pq = pd.DataFrame(
        {
            "sample_id": df["sample_id"].astype("int64"),
            "catalog_content": df["catalog_content"],
            "image_link": df["image_link"],
            "price": df["price"].where(df.index != 2, "N/A").where(df.index != 5, "$12,00"),
        }
    )
    pq.to_parquet(tmp_path / "typed.parquet")
    res = h.run(tmp_path / "typed.parquet", "typed")
    assert res.success, step_errors(res)
    rows = res.output_for_node("raw_catalog", "raw_catalog")
    quarantine = res.output_for_node("raw_catalog", "catalog_quarantine")
    assert list(rows["sample_id"]) == [str(s) for i, s in enumerate(pq["sample_id"]) if i not in (2, 5)]
    assert rows["price"].dtype == "float64"
    assert rows["price"].tolist() == pytest.approx([float(p) for i, p in enumerate(df["price"]) if i not in (2, 5)])
    assert quarantine[["row", "field"]].values.tolist() == [[3, "price"], [6, "price"]]
    assert set(quarantine["value"]) == {"N/A", "$12,00"}
    assert mat_metadata(res, "raw_catalog")["rows_in"] == 8


def test_unlabeled_batch_without_price_column_is_not_quarantined(h, tmp_path):
    real_rows(10, labeled=False).to_csv(tmp_path / "unl.csv", index=False)
    res = h.run(tmp_path / "unl.csv", "unl")
    assert res.success, step_errors(res)
    meta = mat_metadata(res, "raw_catalog")
    assert (meta["rows"], meta["quarantined_rows"], meta["unlabeled_rows"]) == (10, 0, 10)
    assert res.output_for_node("raw_catalog", "raw_catalog")["price"].isna().all()


def test_a_batch_whose_every_row_is_quarantined_stores_zero_items(h, tmp_path):
    """A labeled file without a single price: every row quarantined with its reason, the batch's
    per-row assets stored empty (count in = out + quarantined), no failed step."""
    real_rows(10).assign(price=np.nan).to_csv(tmp_path / "no_prices.csv", index=False)
    res = h.run(tmp_path / "no_prices.csv", "no_prices")
    assert res.success, step_errors(res)
    meta = mat_metadata(res, "raw_catalog")
    assert (meta["rows"], meta["quarantined_rows"]) == (0, 10)
    assert len(res.output_for_node("catalog_items")) == 0


# ------------------------------------------------------------------------------------------------
# file-level problems: the step fails with a message naming file and line/column, nothing stored
# ------------------------------------------------------------------------------------------------


def _malformed_csv(p: Path) -> None:
    lines = real_rows(6).to_csv(index=False).splitlines(keepends=True)
    # an unescaped quote opens a field that never closes -> the parser reports the row
    p.write_text("".join(lines[:4]) + '123,"Item Name: broken quote,http://x/a.jpg,3.0\n' + "".join(lines[4:]))


def _extra_field_csv(p: Path) -> None:
    df = real_rows(5)[["sample_id", "price"]]
    body = "sample_id,catalog_content,image_link,price\n"
    body += "".join(
        f"{s},Item Name: thing {i},http://x/{i}.jpg,{p}\n" for i, (s, p) in enumerate(zip(df.sample_id, df.price))
    )
    body += "999,Item Name: a,b,http://x/z.jpg,1.0\n"  # 5 fields in a 4-column file, on line 7
    p.write_text(body)


def _missing_column_csv(p: Path) -> None:
    real_rows(5).drop(columns=["image_link"]).to_csv(p, index=False)


def _header_only_csv(p: Path) -> None:
    p.write_text("sample_id,catalog_content,image_link,price\n")


def _empty_csv(p: Path) -> None:
    p.write_bytes(b"")


def _corrupt_parquet(p: Path) -> None:
    p.write_bytes(b"PAR1" + b"\x00garbage" * 10 + b"PAR1")


FILE_CASES = {
    "malformed_csv": (_malformed_csv, "bad.csv", ["malformed CSV", "bad.csv"]),
    "extra_field": (_extra_field_csv, "extra.csv", ["malformed CSV", "line 7", "extra.csv"]),
    "missing_column": (_missing_column_csv, "nolink.csv", ["missing required column(s) ['image_link']", "nolink.csv"]),
    "header_only": (_header_only_csv, "header.csv", ["header but no data rows", "header.csv"]),
    "empty_file": (_empty_csv, "empty.csv", ["empty file", "empty.csv"]),
    "corrupt_parquet": (_corrupt_parquet, "corrupt.parquet", ["unreadable parquet", "corrupt.parquet"]),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_unusable_file_fails_the_step_naming_file_and_place(h, tmp_path, case):
    write, name, fragments = FILE_CASES[case]
    write(tmp_path / name)
    res = h.run(tmp_path / name, case.replace("_", "-"))
    assert not res.success
    errors = step_errors(res)
    assert len(errors) == 1 and "CatalogFormatError" in errors[0], errors
    for frag in fragments:
        assert frag in errors[0], (frag, errors[0][:500])
    assert materialised(res) == set(), "nothing may be stored from an unusable file"


def test_malformed_csv_error_names_the_line(h, tmp_path):
    _malformed_csv(tmp_path / "bad.csv")
    err = step_errors(h.run(tmp_path / "bad.csv", "bad"))[0]
    # pandas: "EOF inside string starting at row 4" (0-based data row of the opening quote)
    assert "row 4" in err or "line 5" in err, err[:500]


# ------------------------------------------------------------------------------------------------
# a contract failure blocks downstream assets
# ------------------------------------------------------------------------------------------------


def test_contract_failure_stores_nothing_and_blocks_downstream_assets(h, tmp_path, monkeypatch):
    """A stage that emits a contract-violating frame fails *before* storing it (ContractViolation with
    the failure cases), so neither it nor ``catalog_items`` / ``product_images`` is materialised."""
    real = ingest_assets.read_catalog

    def leaky_read_catalog(path, storage_options=None):
        rows, quarantine = real(path, storage_options=storage_options)
        rows.loc[1, "price"] = -5.0  # a bug that lets a negative price through
        rows.loc[2, "sample_id"] = rows.loc[0, "sample_id"]
        return rows, quarantine

    monkeypatch.setattr(ingest_assets, "read_catalog", leaky_read_catalog)
    real_rows(6).to_csv(tmp_path / "ok.csv", index=False)
    res = h.run(
        tmp_path / "ok.csv", "leaky", select=("raw_catalog", "catalog_quarantine", "catalog_items", "product_images")
    )

    assert not res.success
    (failure,) = [e for e in res.all_events if e.is_step_failure]
    err = failure.event_specific_data.error
    assert failure.step_key == "raw_catalog" and "ContractViolation" in err.cls_name
    assert "raw_catalog: 3 contract failure(s), nothing stored" in err.message
    assert "price" in err.message and "sample_id" in err.message
    assert materialised(res) == set()
    assert h.instance.get_latest_materialization_event(dg.AssetKey("raw_catalog")) is None
    assert not (Path(h.settings.storage) / "assets" / "raw_catalog" / "leaky.parquet").exists()
    ran = {e.step_key for e in res.all_events if e.event_type_value == "STEP_START"}
    assert ran == {"raw_catalog"}, ran
    assert h.instance.get_latest_materialization_event(dg.AssetKey("catalog_items")) is None


# ------------------------------------------------------------------------------------------------
# images: every bad link or body is a status with a reason, never a crash
# ------------------------------------------------------------------------------------------------


def _png_header_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG whose IHDR claims width x height pixels (10^10 here) with a tiny body: the
    classic decompression bomb shape. IHDR layout and CRC: PNG spec (RFC 2083 §4.1.1, §3.4)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def _image_batch(path: Path, links: list[str]) -> list[str]:
    df = real_rows(len(links))
    df["image_link"] = links
    df.to_csv(path, index=False)
    return df["sample_id"].tolist()


def test_unsafe_links_get_invalid_url_status(h, tmp_path):
    """SSRF guard at the asset level (default resource: private hosts refused)."""
    links = {
        "file": "file:///etc/passwd",
        "ftp": "ftp://ftp.example.com/pub/a.jpg",
        "loopback": "http://127.0.0.1:9/a.jpg",
        "localhost": "http://localhost/a.jpg",
        "private": "http://10.1.2.3/a.jpg",
        "metadata": "http://169.254.169.254/latest/meta-data/",
        "ipv6_loopback": "http://[::1]/a.jpg",
        "no_host": "http:///a.jpg",
        "empty": "",
    }
    ids = _image_batch(tmp_path / "links.csv", list(links.values()))
    res = h.run(tmp_path / "links.csv", "links", select=("raw_catalog", "catalog_quarantine", "product_images"))
    assert res.success, step_errors(res)
    out = res.output_for_node("product_images").set_index("sample_id").loc[ids]
    status = dict(zip(links, out["status"]))
    assert status == {**{k: "invalid_url" for k in links if k != "empty"}, "empty": "missing"}, status
    assert (out["reason"].str.len() > 0).all()
    assert out["image_uri"].isna().all()
    meta = mat_metadata(res, "product_images")
    assert meta["rows"] == len(links)
    assert meta["status_counts"] == {"invalid_url": 8, "missing": 1}


def test_bad_image_bodies_get_statuses_through_local_server(tmp_path):
    """Non-image bytes, truncated JPEG, decompression bomb, 0-byte body, permanent 404, a server that
    keeps failing (gives up after the retries) and one that recovers; a good photo is stored."""
    h = Harness(tmp_path, allow_private_hosts=True, retries=2)
    photo = sorted(IMAGES.glob("*.jpg"))[0].read_bytes()
    with ScriptedServer() as srv:
        routes = {
            "good": srv.route("/good.jpg", Reply(body=photo)),
            "html": srv.route(
                "/page.jpg",
                Reply(body=b"<html><body>Sorry, we just need to make sure</body></html>", content_type="text/html"),
            ),
            "text_as_jpeg": srv.route("/fake.jpg", Reply(body=b"GIF? no: plain text pretending" * 10)),
            "truncated": srv.route("/trunc.jpg", Reply(body=photo[: len(photo) // 2])),
            "bomb": srv.route("/bomb.png", Reply(body=_png_header_bomb(), content_type="image/png")),
            "zero_bytes": srv.route("/zero.jpg", Reply(body=b"")),
            "not_found": srv.url("/gone.jpg"),
            "always_503": srv.route("/down.jpg", Reply(status=503)),
            "flaky": srv.route("/flaky.jpg", Reply(status=500), Reply(body=photo)),
        }
        ids = _image_batch(tmp_path / "bodies.csv", list(routes.values()))
        res = h.run(tmp_path / "bodies.csv", "bodies", select=("raw_catalog", "catalog_quarantine", "product_images"))
        hits = dict(srv.hits)
    assert res.success, step_errors(res)
    out = res.output_for_node("product_images").set_index("sample_id").loc[ids]
    status = dict(zip(routes, out["status"]))
    assert status == {
        "good": "ok",
        "html": "not_image",
        "text_as_jpeg": "not_image",
        "truncated": "corrupt",
        "bomb": "too_large",
        "zero_bytes": "corrupt",
        "not_found": "missing",  # a 404 is a normal "no photo" state in lib.images.fetch, not an error
        "always_503": "http_error",
        "flaky": "ok",
    }, status
    reasons = dict(zip(routes, out["reason"]))
    assert all(reasons[k] for k in routes if status[k] != "ok"), reasons
    assert "503" in reasons["always_503"] and "404" in reasons["not_found"]
    # retries: transient errors retried (retries=2 -> 3 attempts), a 404 is not retried
    assert hits["/down.jpg"] == 3 and hits["/flaky.jpg"] == 2 and hits["/gone.jpg"] == 1
    # the good and recovered photos are the same bytes: stored once, both rows point at it
    ok = out[out["status"] == "ok"]
    assert ok["image_uri"].nunique() == 1 and Path(ok["image_uri"].iloc[0]).read_bytes() == photo
    assert out.loc[out["status"] != "ok", "image_uri"].isna().all()
    meta = mat_metadata(res, "product_images")
    assert meta["rows"] == len(routes) and sum(meta["status_counts"].values()) == len(routes)
    checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in res.get_asset_check_evaluations()}
    assert checks[("product_images", "contract")] is True


def test_a_contract_violation_is_never_retried_by_a_step_retry_policy(h, tmp_path, monkeypatch):
    """``product_images`` has a ``RetryPolicy`` for network faults; a contract violation fails the same
    way again, so the step runs once (it re-fetched the whole batch twice more before)."""
    import pricing_assets.lib.images.fetch as images_lib

    real = images_lib.fetch_images
    calls = []

    def broken_fetch(frame, cfg, progress=None):
        calls.append(1)
        out = real(frame, cfg, progress=progress)
        out.loc[0, "status"] = "teleported"  # not a status of the contract
        return out

    monkeypatch.setattr(images_lib, "fetch_images", broken_fetch)
    real_rows(4).to_csv(tmp_path / "ok.csv", index=False)
    res = h.run(tmp_path / "ok.csv", "noretry", select=("raw_catalog", "catalog_quarantine", "product_images"))
    assert not res.success
    (failure,) = [e for e in res.all_events if e.is_step_failure]
    assert failure.step_key == "product_images" and "ContractViolation" in failure.event_specific_data.error.cls_name
    assert not [e for e in res.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(calls) == 1
