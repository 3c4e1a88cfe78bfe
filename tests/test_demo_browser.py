"""The demo end to end in a real browser: Debian's Chromium, headless, driven by Playwright.

Starts `pipeline demo` on a free port in a subprocess, uploads a non-audio file (a message, not a
stack trace), runs the scripted hesitation sample in both panes in real time, waits for both
timelines, checks both panes show numbers and that VAD-only cut the hesitation turn off while the
semantic pane did not, and saves a screenshot to runs/demo/screenshot.png (README's docs/demo.png is
this screenshot). Two browser sessions at once keep their own histories and tables; the microphone
path is driven by Chromium's fake capture device playing a WAV file. Never downloads a browser.
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
    deadline = time.monotonic() + 300  # two panes, each with its own LLM, STT and voice, loaded before serving
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the demo exited with {proc.returncode}:\n{logf.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=2).read(100)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the demo did not serve {url} within 300 s:\n{logf.read_text()[-3000:]}")
                time.sleep(1.0)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _browser(p, profile: Path, extra_args: tuple[str, ...] = ()):
    return p.chromium.launch_persistent_context(
        str(profile), executable_path=str(CHROMIUM), headless=True, viewport={"width": 1500, "height": 1000},
        args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync", *extra_args])


OVERLOADED = "no verdict: the machine was overloaded"
_BUSY = re.compile(r"processing \||queue: \d+/\d+")  # Gradio's overlay on outputs of a pending event


def _outputs_settled(page, started_s: float = 30, settle_s: float = 300) -> None:
    """Wait until a run just started on `page` has shown Gradio's pending overlay and finished (no output of the
    page shows it any more): reading verdicts while the overlay is up reads 'processing | 1.5/40.1s'."""
    def busy() -> bool:
        return any(_BUSY.search(page.locator(sel).inner_text()) for sel in
                   ("#status", "#verdict-vad", "#verdict-semantic", "#running-table"))
    t0 = time.monotonic()
    while not busy() and time.monotonic() - t0 < started_s:
        page.wait_for_timeout(100)
    while busy():
        assert time.monotonic() - t0 < settle_s, f"the run did not finish within {settle_s} s"
        page.wait_for_timeout(250)


def _cutoffs(table: str) -> list[tuple[int, int]]:
    """The running table's "cut-offs / turns" cells, VAD-only's row first. Runs the page marked overloaded are not
    counted, so after a rerun a pane can hold two turns and the other one."""
    return [(int(a), int(b)) for a, b in re.findall(r"\b(\d+)/(\d+)\b", table)]


def _verdicts_rerun_when_overloaded(page, name: str, reruns: int = 2) -> tuple[str, str, str]:
    """The pane verdicts and the running table once the page's run is done. A run whose decisions or audio fell
    more than OVERLOAD_LAG_S behind the audio gets no verdict and asks the user to run it again (CI's 2 shared
    cores with Chromium and the demo's pipelines can get there); the test does what the page asks, at most
    `reruns` times, so the verdict it checks is the policy's, not the machine's."""
    for attempt in range(reruns + 1):
        got = (page.locator("#verdict-vad").inner_text(), page.locator("#verdict-semantic").inner_text(),
               page.locator("#running-table").inner_text())
        if OVERLOADED not in got[0] + got[1] or attempt == reruns:
            return got
        page.locator("#run-sample").click()
        _outputs_settled(page)
        sync_api.expect(page.locator("#status")).to_contain_text(f"Done: sample '{name}'", timeout=10_000)
    raise AssertionError("unreachable")


@pytest.mark.timeout(1000)
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
        verdict_vad, verdict_sem, table = _verdicts_rerun_when_overloaded(page, "hesitation")
        page.screenshot(path=str(shot), full_page=True)
        ctx.close()
    assert "CUT OFF" in verdict_vad, verdict_vad
    assert "no cut-off" in verdict_sem and "CUT OFF" not in verdict_sem, verdict_sem
    # both panes show their latencies; a cut-off pane's are negative when the reply it started early was
    # already playing before the user went on (a real-time race: otherwise the reply after the resumed
    # turn is the one shown), the semantic pane's never are
    assert re.search(r"endpoint -?\d+ ms", verdict_vad) and re.search(r"agent audio -?\d+ ms", verdict_vad), verdict_vad
    assert re.search(r"endpoint \d+ ms", verdict_sem) and re.search(r"agent audio \d+ ms", verdict_sem), verdict_sem
    (vad_cut, vad_n), (sem_cut, sem_n) = _cutoffs(table)  # VAD-only cut every counted turn, semantic none
    assert "VAD-only" in table and "Semantic" in table and vad_cut == vad_n >= 1 and sem_cut == 0 < sem_n, table
    assert shot.stat().st_size > 20_000


@pytest.mark.timeout(900)
def test_two_sessions_at_once_keep_their_own_histories_and_tables(demo_url, tmp_path):
    """Issue 15 #7: two browser sessions run at the same moment, one the hesitation sample, the other the
    backchannel sample. The demo admits one comparison at a time (the other page sees its queue position);
    each gets the verdicts of its own input and a running table of its own turns only: the hesitation page's
    VAD-only pane cut 1 of 1 turns off, the backchannel page's 0 of 1."""
    with sync_api.sync_playwright() as p:
        ctxs = [_browser(p, tmp_path / f"profile{i}") for i in range(2)]
        pages = [c.new_page() for c in ctxs]
        for page in pages:
            page.goto(demo_url, wait_until="domcontentloaded", timeout=60_000)
            sync_api.expect(page.locator("#run-sample")).to_be_visible(timeout=60_000)
        pages[1].locator("#sample input").click()
        pages[1].get_by_role("option", name="backchannel").click()
        for page in pages:
            page.locator("#run-sample").click()
        queued = False
        for _ in range(40):  # while the first runs, the second page shows Gradio's queue position
            if re.search(r"queue: \d+/\d+", pages[1].content()) or re.search(r"queue: \d+/\d+", pages[0].content()):
                queued = True
                break
            pages[1].wait_for_timeout(250)
        seen = []
        for page, name in zip(pages, ("hesitation", "backchannel")):
            sync_api.expect(page.locator("#status")).to_contain_text(f"Done: sample '{name}'", timeout=300_000)
        for page, name in zip(pages, ("hesitation", "backchannel")):  # both done: a rerun runs alone
            seen.append(_verdicts_rerun_when_overloaded(page, name))
        for c in ctxs:
            c.close()
    assert queued, "the second session was not shown a queue position"
    (hes_vad, hes_sem, hes_table), (bc_vad, bc_sem, bc_table) = seen
    assert "CUT OFF" in hes_vad and "no cut-off" in hes_sem and "CUT OFF" not in hes_sem, (hes_vad, hes_sem)
    assert "what do you think makes a good weekend" in bc_vad and "CUT OFF" not in bc_vad + bc_sem, (bc_vad, bc_sem)
    assert "flight" not in bc_vad + bc_sem and "weekend" not in hes_vad + hes_sem  # each page its own input
    # VAD-only cut off every hesitation turn it counted, semantic none; no backchannel turn was cut off (a rerun
    # after an overloaded run adds a turn to the panes that got a verdict)
    (vad_cut, vad_n), (sem_cut, sem_n) = _cutoffs(hes_table)
    assert vad_cut == vad_n >= 1 and sem_cut == 0 < sem_n, hes_table
    assert [c for c, _ in _cutoffs(bc_table)] == [0, 0] and all(n >= 1 for _, n in _cutoffs(bc_table)), bc_table


@pytest.mark.timeout(800)
def test_microphone_path_with_chromium_fake_audio_capture(demo_url, tmp_path):
    """Issue 15 #7: the live microphone, end to end in the browser. Chromium's fake capture device plays a WAV
    (the hesitation sample's request, festival slt, then silence) into the page's microphone component; the
    page streams it to the server, the semantic pane listens live, and after stop the VAD-only pane replays
    the recording. Both panes show a verdict with latencies and an agent reply to what was said."""
    import numpy as np
    import soundfile as sf

    from pipeline.serving.demo.samples import HESITATION_PARTS, SAMPLE_VOICE
    from pipeline.bench.scenarios import spoken

    said = spoken(HESITATION_PARTS[0].replace(", um", "") + " " + HESITATION_PARTS[1], SAMPLE_VOICE).audio
    wav = tmp_path / "request.wav"
    sf.write(wav, np.concatenate([np.zeros(8000, np.float32), said, np.zeros(16000 * 4, np.float32)]), 16000,
             subtype="PCM_16")
    length_s = sf.info(str(wav)).duration
    fake = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}")
    with sync_api.sync_playwright() as p:
        ctx = _browser(p, tmp_path / "profile", fake)
        ctx.grant_permissions(["microphone"], origin=demo_url.rstrip("/"))
        page = ctx.new_page()
        page.goto(demo_url, wait_until="domcontentloaded", timeout=60_000)
        mic = page.locator("#mic")
        sync_api.expect(mic).to_be_visible(timeout=60_000)
        status = page.locator("#status")
        for attempt in range(3):  # an overloaded session (audio reached the VAD late) asks to be run again
            mic.get_by_role("button", name=re.compile("record", re.I)).first.click()
            sync_api.expect(status).to_contain_text("Listening", timeout=30_000)
            page.wait_for_timeout(int(1000 * (length_s - 1.0)))  # the file loops: stop within its first play
            mic.get_by_role("button", name=re.compile("stop", re.I)).first.click()
            sync_api.expect(status).to_contain_text("Done: live microphone input", timeout=180_000)
            _outputs_settled(page, started_s=0)
            verdicts = [page.locator(f"#verdict-{pane}").inner_text() for pane in ("vad", "semantic")]
            if OVERLOADED not in "".join(verdicts):
                break
        transcripts = [page.locator(f"#transcript-{pane} textarea").input_value() for pane in ("vad", "semantic")]
        ctx.close()
    for v, t in zip(verdicts, transcripts):
        assert "cut-off unknown" in v and re.search(r"endpoint \d+ ms", v) and re.search(r"agent audio \d+ ms", v), v
        assert "flight" in t and "agent: " in t, t
