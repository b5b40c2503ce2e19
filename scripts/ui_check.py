"""Browser check of the Dagster UI (``make ui-check``): every asset and check is listed, and a
screenshot of the asset graph is saved to ``docs/ui-graph.png`` (global lineage) and
``docs/ui-graph-ingest.png`` (the ingest group's nodes with their checks).

Steps: start ``dagster dev -h 127.0.0.1`` on a free port with a temporary ``DAGSTER_HOME`` (the
bundled ``infra/dagster.yaml``: no telemetry, no onboarding pop-up); wait for ``/server_info``;
ask the GraphQL API for the code location's load status, its asset nodes and their checks and
compare them with the in-process ``defs``; render the asset catalog in headless Chromium
(``--dump-dom``) and require every asset name in the page; screenshot the global asset lineage and
the ingest group (``--screenshot``, 1600x1000) and require non-blank images; stop the server's process group.

Exit status: 0 all good, 1 a check failed (printed), 77 Chromium not installed (skip; CI has none).
Needs: ``apt-get install -y chromium`` (Debian package ``chromium``).

    python scripts/ui_check.py [--out docs/ui-graph.png] [--timeout 180]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SKIP = 77

QUERY = """
{
  workspaceOrError { __typename ... on Workspace { locationEntries { name
      locationOrLoadError { __typename ... on PythonError { message } } } } }
  assetNodes { assetKey { path } assetChecksOrError { __typename ... on AssetChecks { checks { name } } } }
}
"""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary on PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if p := shutil.which(name):
            return p
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen) -> None:
    """Poll ``url`` until it answers 200; raises RuntimeError on timeout or if ``proc`` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")


def graphql(base: str, query: str) -> dict:
    req = urllib.request.Request(
        f"{base}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        body = json.load(r)
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return body["data"]


def expected_from_defs() -> tuple[set[str], set[str]]:
    """(asset keys, 'asset_key:check_name') of the in-process ``defs`` (same env as the server)."""
    from pricing_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    assets = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).is_materializable}
    checks = {f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys}
    return assets, checks


def chromium(binary: str, args: list[str], timeout_s: float = 120) -> subprocess.CompletedProcess:
    base = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--virtual-time-budget=15000",
    ]
    return subprocess.run([*base, *args], capture_output=True, text=True, timeout=timeout_s)


RUNS_QUERY = """
{ runsOrError(limit: 500) { __typename ... on Runs { results { runId status jobName } } } }
"""


def _screenshot(browser: str, url: str, dst: Path, work: Path) -> str | None:
    """Save a 1600x1000 screenshot of ``url`` to ``dst``; the problem, or None when it is a real page."""
    tmp_png = work / dst.name
    shot = chromium(browser, ["--window-size=1600,1000", f"--screenshot={tmp_png}", url])
    if not tmp_png.exists():
        return f"no screenshot of {url}: {shot.stderr[-500:]}"
    from PIL import Image

    with Image.open(tmp_png) as im:
        colors = im.convert("RGB").getcolors(maxcolors=1_000_000) or []
        size = im.size
    shutil.copy(tmp_png, dst)
    print(f"screenshot {dst} ({url}) {size[0]}x{size[1]}, {len(colors)} colours, {dst.stat().st_size} bytes")
    return f"screenshot of {url} looks blank ({len(colors)} colours)" if len(colors) < 50 else None


def check_webserver(
    base: str, browser: str, shots: dict[Path, str], work: Path, run_id: str | None = None
) -> tuple[list[str], dict]:
    """Check a running Dagster webserver at ``base`` against the in-process ``defs``: its GraphQL API
    lists the code location (loaded), every asset and check, and the runs; headless Chromium renders
    every asset name in the catalog; screenshots of ``shots`` (file -> path under ``base``, with
    ``{location}`` and ``{run_id}`` filled in) are saved and must not be blank.

    Returns:
        (failures, {"assets", "checks", "runs", "location"} as the API showed them).
    """
    failures: list[str] = []
    data = graphql(base, QUERY)
    for loc in data["workspaceOrError"].get("locationEntries", []):
        err = loc["locationOrLoadError"]
        if err and err["__typename"] == "PythonError":
            failures.append(f"code location {loc['name']} failed to load: {err['message'][:500]}")
    shown_assets = {"/".join(n["assetKey"]["path"]) for n in data["assetNodes"]}
    shown_checks = {
        f"{'/'.join(n['assetKey']['path'])}:{c['name']}"
        for n in data["assetNodes"]
        if n["assetChecksOrError"]["__typename"] == "AssetChecks"
        for c in n["assetChecksOrError"]["checks"]
    }
    want_assets, want_checks = expected_from_defs()
    if missing := sorted(want_assets - shown_assets):
        failures.append(f"assets missing from the UI: {missing}")
    if missing := sorted(want_checks - shown_checks):
        failures.append(f"checks missing from the UI: {missing}")
    runs = graphql(base, RUNS_QUERY)["runsOrError"].get("results", [])
    location = data["workspaceOrError"]["locationEntries"][0]["name"]
    print(
        f"GraphQL: location {location}, {len(shown_assets)} assets, {len(shown_checks)} checks (defs: {len(want_assets)} assets, "
        f"{len(want_checks)} checks), {len(runs)} runs"
    )

    dom = chromium(browser, ["--window-size=1600,4000", "--dump-dom", f"{base}/assets?view=flat"]).stdout
    not_rendered = sorted(a for a in want_assets if a.split("/")[-1] not in dom)
    if not_rendered:
        failures.append(f"asset catalog page (headless Chromium) lacks: {not_rendered}")
    print(
        f"Chromium DOM of /assets: {len(dom)} chars, {len(want_assets) - len(not_rendered)}/{len(want_assets)} asset names rendered"
    )
    for dst, path in shots.items():
        dst.parent.mkdir(parents=True, exist_ok=True)
        if problem := _screenshot(browser, base + path.format(location=location, run_id=run_id or ""), dst, work):
            failures.append(problem)
    return failures, {"assets": len(shown_assets), "checks": len(shown_checks), "runs": len(runs), "location": location}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "ui-graph.png"))
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for dagster dev")
    args = ap.parse_args(argv)

    browser = find_chromium()
    if browser is None:
        print("SKIP: no chromium on PATH (apt-get install -y chromium)")
        return SKIP

    home = Path(tempfile.mkdtemp(prefix="ui-check-home-"))
    shutil.copy(REPO / "infra" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "PRICING_IMAGES_OFFLINE": "1"}
    os.environ.update({"DAGSTER_HOME": str(home), "PRICING_IMAGES_OFFLINE": "1"})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    dg_cli = str(Path(sys.executable).parent / "dg")
    log = open(home / "dagster-dev.log", "w")
    proc = subprocess.Popen(
        [dg_cli, "dev", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    failures: list[str] = []
    try:
        t0 = time.monotonic()
        wait_http(f"{base}/server_info", args.timeout, proc)
        print(f"dagster dev answered on {base} after {time.monotonic() - t0:.1f} s")

        out = Path(args.out)
        shots = {
            out: "/asset-groups",  # global lineage: the groups and how they connect
            out.with_name(
                out.stem + "-ingest" + out.suffix
            ): "/locations/{location}/asset-groups/ingest",  # nodes + checks
            out.with_name(out.stem + "-freshness" + out.suffix): "/assets/serving_model",  # its freshness policy
        }
        failures += check_webserver(base, browser, shots, home)[0]
    except Exception as exc:  # report, then clean up below
        failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
    if failures:
        print("UI CHECK FAILED:\n  " + "\n  ".join(failures))
        print(f"(server log: {home / 'dagster-dev.log'})")
        return 1
    shutil.rmtree(home, ignore_errors=True)
    print("UI check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
