"""Reproduce issue 28's two demo attacks against a running demo, over its public HTTP API, as a JSON report.

- mic: two `/gradio_api/call/on_mic_chunk` calls (one 0.5 s chunk each, never a stop) used to take both model
  sets of the default configuration for good: every later default run got "all 2 model sets are busy".
  Now each live session ends after `pipeline demo --live-idle-s` (5 s) without audio and returns its set;
  the script then runs the default sample and reports its status and how long it waited.
- buttons: a sample, a real caller (or a real clip) and an upload fired at the same moment. With
  `--max-concurrent-runs 1` they used to run at once (the limit was per button) and a third was refused;
  now they run one after the other through Gradio's queue. The script reports each run's processing
  interval (from the queue's status messages, through gradio_client), the queue positions it was shown,
  and whether any overlapped (by more than 0.5 s of polling) or was refused.

    pipeline demo --port 7860 &
    python benchmarks/demo_abuse.py --url http://127.0.0.1:7860/ --out runs/bench-demo-abuse.json

Exit status 1 when an attack still works (a run refused, runs overlapping, the default run not done).
"""
from __future__ import annotations

import json
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ
from vad_turn.core.config import config_main
from vad_turn.core.runs import atomic_write_json

# the page's settings inputs in order: threshold, action delay, timeout, stop silence, LLM, voice, hedging,
# detector, panes (the demo's defaults; an empty threshold is the detector's own)
SETTINGS = ["", 0.2, 1.5, 0.6, "local", "espeak:en-us+f3", False, "auto", "one after the other"]


@dataclass(frozen=True)
class AbuseConfig:
    url: str = field(default="http://127.0.0.1:7860/", metadata={"help": "the running demo's address"})
    checks: tuple[str, ...] = field(default=("mic", "buttons"), metadata={"help": "of mic, buttons"})
    out: Path = field(default=Path("runs/bench-demo-abuse.json"), metadata={"help": "JSON report"})
    timeout_s: float = field(default=600.0, metadata={"help": "longest wait for one run's result"})

    def __post_init__(self) -> None:
        bad = [c for c in self.checks if c not in ("mic", "buttons")]
        if bad or not self.checks:
            raise ValueError(f"--checks: unknown {bad} (of mic, buttons)" if bad else "--checks needs one check")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"--url must be an http(s) URL, got {self.url!r}")


def _api(url: str) -> str:
    return url.rstrip("/") + "/gradio_api"


def upload(url: str, path: Path) -> dict:
    """Upload a file as the page does; the FileData the API takes for it."""
    import httpx

    with open(path, "rb") as fh:
        r = httpx.post(_api(url) + "/upload", files={"files": (path.name, fh)}, timeout=60)
    r.raise_for_status()
    server_path, = r.json()
    return {"path": server_path, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def call(url: str, api_name: str, data: list, timeout_s: float, events: list | None = None) -> dict:
    """POST /call/<api_name>, then read its SSE stream to the end: {"status": the first output (the page's
    status line), "messages": [(t, event)], "t_submit", "t_end"}. `events` gets (time, event, data) as they come."""
    import httpx

    t0 = time.monotonic()
    r = httpx.post(f"{_api(url)}/call/{api_name}", json={"data": data}, timeout=30)
    r.raise_for_status()
    event_id = r.json()["event_id"]
    messages, out, last = [], None, None
    with httpx.stream("GET", f"{_api(url)}/call/{api_name}/{event_id}", timeout=timeout_s) as resp:
        ev = None
        for line in resp.iter_lines():
            if line.startswith("event:"):
                ev = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                payload = line.split(":", 1)[1].strip()
                last = payload[:300]
                messages.append((round(time.monotonic() - t0, 2), ev))
                if events is not None:
                    events.append((time.monotonic(), ev, payload[:200]))
                if ev in ("complete", "generating"):
                    try:
                        out = json.loads(payload)
                    except json.JSONDecodeError:
                        out = payload
                if ev in ("complete", "error"):
                    break
    # the page's status line: the first text output (a gr.State output comes back as null)
    texts = [x for x in out if isinstance(x, str)] if isinstance(out, list) else [out]
    status = texts[0] if texts else None
    return {"status": status, "messages": messages, "last_data": last, "t_submit": t0, "t_end": time.monotonic(),
            "error": any(ev == "error" for _, ev in messages)}


def _wav(path: Path, seconds: float, amp: float, seed: int = 0) -> Path:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(SAMPLE_RATE_HZ * seconds)) / SAMPLE_RATE_HZ
    audio = amp * np.sin(2 * np.pi * 220 * t) + 0.003 * rng.standard_normal(t.size)
    sf.write(path, audio.astype(np.float32), SAMPLE_RATE_HZ)
    return path


def check_mic(cfg: AbuseConfig, tmp: Path) -> dict:
    """Two chunk calls, no stop; once both streams are over, the default sample."""
    chunk = upload(cfg.url, _wav(tmp / "chunk.wav", 0.5, 0.01))
    results = [None, None]

    def chunk_call(i):
        results[i] = call(cfg.url, "on_mic_chunk", [chunk, *SETTINGS], cfg.timeout_s)

    threads = [threading.Thread(target=chunk_call, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:  # both streams end without a stop (Gradio's 60 s stream limit); their sessions are left
        th.join(cfg.timeout_s)
    t = time.monotonic()
    run = call(cfg.url, "on_sample", ["hesitation", *SETTINGS], cfg.timeout_s)
    ok = isinstance(run["status"], str) and run["status"].startswith("Done:")
    return {"chunk_statuses": [r and r["status"] for r in results],
            "chunk_streams": [r and {"events": r["messages"], "last_data": r["last_data"]} for r in results],
            "default_run_status": run["status"],
            "default_run_wait_s": round(run["t_end"] - t, 1), "ok": ok}


def check_buttons(cfg: AbuseConfig, tmp: Path) -> dict:
    """A sample, a caller (else a clip) and an upload at once, through gradio_client (which follows the queue):
    each run's processing interval, the queue positions it was shown, refusals and overlaps."""
    from gradio_client import Client, handle_file

    client = Client(cfg.url, verbose=False)
    wav = _wav(tmp / "hello.wav", 3.0, 0.3)
    info = json.loads(__import__("httpx").get(cfg.url.rstrip("/") + "/config", timeout=30).text)
    choices = {}
    for comp in info.get("components", []):
        props = comp.get("props", {})
        if str(props.get("label", "")).startswith(("real clip", "real caller")) and props.get("choices"):
            first = props["choices"][0]
            choices[props["label"].split(" (")[0]] = first[0] if isinstance(first, list) else first
    third = ("/on_caller", choices["real caller"]) if "real caller" in choices else ("/on_clip", choices.get("real clip"))
    t0 = time.monotonic()
    jobs = {"/on_sample": client.submit("hesitation", *SETTINGS, api_name="/on_sample"),
            "/on_upload": client.submit(handle_file(str(wav)), *SETTINGS, api_name="/on_upload"),
            third[0]: client.submit(third[1], *SETTINGS, api_name=third[0])}
    seen = {name: {"ranks": set(), "start": None, "end": None} for name in jobs}
    while any(not j.done() for j in jobs.values()) and time.monotonic() - t0 < cfg.timeout_s:
        now = time.monotonic() - t0
        for name, job in jobs.items():
            st, row = job.status(), seen[name]
            if st.code.name == "IN_QUEUE" and st.rank is not None:
                row["ranks"].add(st.rank)
            if st.code.name in ("PROCESSING", "ITERATING") and row["start"] is None:
                row["start"] = now
            # the server's part is over at FINISHED; done() comes later, after the client fetched the output files
            if row["end"] is None and (st.code.name in ("FINISHED", "CANCELLED") or job.done()):
                row["end"] = now
        time.sleep(0.05)
    rows = []
    for name, job in jobs.items():
        row = seen[name]
        status = job.result(timeout=cfg.timeout_s)[0]
        rows.append({"button": name, "status": status, "queue_positions_shown": sorted(row["ranks"]),
                     "processing_s": [round(row["start"] or 0.0, 1), round(row["end"] or time.monotonic() - t0, 1)]})
    spans = sorted(r["processing_s"] for r in rows)
    overlap_s = max([a[1] - b[0] for a, b in zip(spans, spans[1:])] + [0.0])
    refused = [r["button"] for r in rows if re.search(r"busy|Cannot run", str(r["status"]))]
    failed = [r["button"] for r in rows if not str(r["status"]).startswith("Done:") and r["button"] not in refused]
    return {"runs": rows, "refused": refused, "failed": failed, "overlap_s": round(overlap_s, 1),
            "ok": not refused and not failed and overlap_s <= 0.5}


def run(cfg: AbuseConfig) -> dict:
    report = {"url": cfg.url}
    with tempfile.TemporaryDirectory() as d:
        for check in cfg.checks:
            t = time.monotonic()
            report[check] = {**(check_mic if check == "mic" else check_buttons)(cfg, Path(d)),
                             "wall_s": round(time.monotonic() - t, 1)}
            print(check, json.dumps(report[check]), flush=True)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(cfg.out), report)
    report["ok"] = all(report[c]["ok"] for c in cfg.checks)
    print(f"{'no attack worked' if report['ok'] else 'AN ATTACK STILL WORKS'}; report {cfg.out}")
    return report


def main(argv: list[str] | None = None) -> int:
    return config_main(AbuseConfig, lambda c: 0 if run(c)["ok"] else 1, argv, __doc__.split("\n")[0],
                       prog="python benchmarks/demo_abuse.py")


if __name__ == "__main__":
    raise SystemExit(main())
