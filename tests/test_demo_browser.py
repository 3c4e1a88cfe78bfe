"""The demo end to end in a real browser: Debian's Chromium, headless, driven by Playwright.

Starts `pipeline demo` on a free port in a subprocess, uploads a non-audio file (a message, not a
stack trace), runs the scripted hesitation sample in both panes in real time, waits for both
timelines, checks both panes show numbers and that VAD-only cut the hesitation turn off while the
semantic pane did not, and saves a screenshot to runs/demo/screenshot.png. Never downloads a browser.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright import sync_api

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", autouse=True)
def chromium() -> Path:
    """Debian's Chromium, a system package `make setup` installs (DEBIAN_PKGS): missing, it is a failure."""
    if not CHROMIUM.exists():
        pytest.fail(f"Debian chromium not installed ({CHROMIUM}): run `make setup` (it apt-get installs chromium)",
                    pytrace=False)
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    port = _free_port()
    logf = tmp_path_factory.mktemp("demo") / "server.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false"}
    with open(logf, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "demo", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 150
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the demo exited with {proc.returncode}:\n{logf.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=2).read(100)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the demo did not serve {url} within 150 s:\n{logf.read_text()[-3000:]}")
                time.sleep(1.0)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _browser(p, profile: Path):
    return p.chromium.launch_persistent_context(
        str(profile), executable_path=str(CHROMIUM), headless=True, viewport={"width": 1500, "height": 1000},
        args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"])


@pytest.mark.timeout(300)
def test_hesitation_side_by_side_in_chromium(demo_url, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio\n")
    shot = ROOT / "runs" / "demo" / "screenshot.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        ctx = _browser(p, tmp_path / "profile")
        page = ctx.new_page()
        page.goto(demo_url, wait_until="domcontentloaded", timeout=60_000)
        sync_api.expect(page.locator("#run-sample")).to_be_visible(timeout=60_000)
        # bad input: a message in the page, not a stack trace
        page.locator("#upload input[type=file]").set_input_files(str(bad))
        page.wait_for_timeout(1500)
        page.locator("#run-upload").click()
        status = page.locator("#status")
        sync_api.expect(status).to_contain_text("Cannot run", timeout=60_000)
        assert "notes.wav" in status.inner_text() and "Traceback" not in page.content()
        # the scripted hesitation comparison (the default sample), both panes at once in real time
        page.locator("#run-sample").click()
        sync_api.expect(status).to_contain_text("Done: sample 'hesitation'", timeout=200_000)
        for pane in ("vad", "semantic"):
            sync_api.expect(page.locator(f"#timeline-{pane} img")).to_be_visible(timeout=10_000)
        verdict_vad = page.locator("#verdict-vad").inner_text()
        verdict_sem = page.locator("#verdict-semantic").inner_text()
        table = page.locator("#running-table").inner_text()
        page.screenshot(path=str(shot), full_page=True)
        ctx.close()
    assert "CUT OFF" in verdict_vad, verdict_vad
    assert "no cut-off" in verdict_sem and "CUT OFF" not in verdict_sem, verdict_sem
    # both panes show their latencies; a cut-off pane's are negative when the reply it started early was
    # already playing before the user went on (a real-time race: otherwise the reply after the resumed
    # turn is the one shown), the semantic pane's never are
    assert re.search(r"endpoint -?\d+ ms", verdict_vad) and re.search(r"agent audio -?\d+ ms", verdict_vad), verdict_vad
    assert re.search(r"endpoint \d+ ms", verdict_sem) and re.search(r"agent audio \d+ ms", verdict_sem), verdict_sem
    assert "VAD-only" in table and "Semantic" in table and "1/1" in table and "0/1" in table, table
    assert shot.stat().st_size > 20_000


@pytest.mark.timeout(420)
def test_two_sessions_at_once_get_the_verdicts_of_one(demo_url, tmp_path):
    """Issue 13 #2: two browser sessions run the hesitation sample at the same moment. The demo admits one
    comparison at a time (the other page sees its queue position) and both get the verdicts a single
    session gets: VAD-only cuts the hesitation off, the semantic pane does not; nothing is overloaded."""
    with sync_api.sync_playwright() as p:
        ctxs = [_browser(p, tmp_path / f"profile{i}") for i in range(2)]
        pages = [c.new_page() for c in ctxs]
        for page in pages:
            page.goto(demo_url, wait_until="domcontentloaded", timeout=60_000)
            sync_api.expect(page.locator("#run-sample")).to_be_visible(timeout=60_000)
        for page in pages:
            page.locator("#run-sample").click()
        queued = False
        for _ in range(40):  # while the first runs, the second page shows Gradio's queue position
            if re.search(r"queue: \d+/\d+", pages[1].content()) or re.search(r"queue: \d+/\d+", pages[0].content()):
                queued = True
                break
            pages[1].wait_for_timeout(250)
        verdicts = []
        for page in pages:
            sync_api.expect(page.locator("#status")).to_contain_text("Done: sample 'hesitation'", timeout=300_000)
            verdicts.append((page.locator("#verdict-vad").inner_text(), page.locator("#verdict-semantic").inner_text()))
        for c in ctxs:
            c.close()
    assert queued, "the second session was not shown a queue position"
    for vad, sem in verdicts:
        assert "overloaded" not in vad + sem, (vad, sem)
        assert "CUT OFF" in vad, vad
        assert "no cut-off" in sem and "CUT OFF" not in sem, sem
