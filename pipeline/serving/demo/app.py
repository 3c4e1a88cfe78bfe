"""The Gradio app: two agent panes (VAD-only, semantic) on the same input, settings, report tabs.

Thin wiring only: inputs -> `samples` / `session.compare` / `live.LiveSession` -> `views`. Every
handler turns bad input into a status message (never a stack trace in the page), and all per-user
state lives in `gr.State` (a history of scored turns, a live session), so browser sessions do not
share state; loaded models are lent per run by `session.POOL`.

    pipeline demo                      # http://127.0.0.1:7860
    pipeline demo --port 7861 --share  # Gradio share link
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import weakref
from dataclasses import dataclass, field

from pipeline.runtime.runner import default_pipeline_policy

from .live import MAX_S as LIVE_MAX_S
from .reports import OP_HEADERS, eval_source, eval_view, prosody_source, prosody_view, run_label
from .samples import SAMPLES, InputError, check_upload, getgoing_samples, real_clips, sample_scenario
from .session import (
    DEMO_DETECTOR_CHOICES,
    DEMO_DETECTORS,
    PANE_MODES,
    PANE_TITLES,
    PANES,
    PANES_SEQUENTIAL,
    DemoSettings,
    compare,
    policy_note,
)
from .views import TABLE_HEADERS, add_to_history, pane_view, running_table

log = logging.getLogger("pipeline.serving.demo")
VOICES = ("espeak:en-us+f3", "espeak:en-us", "espeak:en+m3", "flite:slt", "festival:cmu_us_slt_arctic_hts")
INTRO = """# Semantic endpointing vs VAD-only, side by side
Both agents hear the same audio in real time. **VAD-only** ends your turn after `stop_silence_s` of
silence; **semantic** asks the end-of-turn model (p_eot) during each silence and ends the turn when
p_eot passes the threshold after the action delay, or at the timeout. Run a scripted sample (the
*hesitation* sample pauses 1 s after "a flight to, um"), a **real caller** (GetGoing test turns:
telephone speech to a bus information system, with its real pauses), a real clip, an upload, or
talk into the microphone. Each pane shows per turn: the timeline, the transcript, the agent's
audio, and the running P50/P99 latency and false cut-off table.

**The panes run one after the other** (Settings: *panes*): the VAD-only agent replays the input in
real time, then the semantic agent replays the same audio, each alone on the machine, so neither
slows the other and the latencies are the ones `pipeline bench` measures (with the microphone, the
semantic agent listens live and the VAD-only agent replays your recording after it)."""


@dataclass(frozen=True)
class DemoConfig:
    """Server settings. The LLM endpoint and its key are the operator's: the page can only choose between
    the local model and this endpoint, so no visitor can make the server call (or send its key to) an
    address of their choosing."""

    host: str = field(default="127.0.0.1", metadata={"help": "address to serve on"})
    port: int = field(default=7860, metadata={"help": "port (7860 as in `make demo`)"})
    share: bool = field(default=False, metadata={"help": "also open a public Gradio share link"})
    preload: bool = field(default=True, metadata={"help": "load the models before serving (first run is faster)"})
    llm_endpoint: str = field(default="", metadata={
        "help": "OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1) offered as the page's 'endpoint' "
                "LLM backend; empty: local model only"})
    llm_model: str = field(default="", metadata={"help": "model name at --llm-endpoint"})
    llm_api_key_env: str = field(default="OPENAI_API_KEY", metadata={
        "help": "environment variable holding the key sent to --llm-endpoint (and nowhere else)"})
    max_concurrent_runs: int = field(default=1, metadata={
        "help": "runs at once on the whole server - samples, callers, clips, uploads and live microphone sessions "
                "together (each plays two panes in real time; 2 cores keep one in real time); the others wait in "
                "Gradio's queue, which shows each page its position"})
    max_model_configs: int = field(default=3, metadata={
        "help": "loaded model configurations (voice / detector / LLM choices) kept at once, 1.3-2.3 GB each "
                "(2.3 with hedging; benchmarks/demo_pool_memory.py); the least recently used idle one is freed "
                "for a new one"})
    live_idle_s: float = field(default=5.0, metadata={
        "help": "a live microphone session that sent no audio for this long ends and returns its models"})
    files_ttl_s: float = field(default=300.0, metadata={
        "help": "uploads not run and run outputs (conversation audio, timelines) are deleted after this long"})

    def __post_init__(self) -> None:
        if self.llm_endpoint and not self.llm_endpoint.startswith(("http://", "https://")):
            raise ValueError(f"--llm-endpoint must be an http(s) URL, got {self.llm_endpoint!r}")
        if self.llm_endpoint and not self.llm_model:
            raise ValueError("--llm-endpoint needs --llm-model (the model name at the endpoint)")
        if self.max_model_configs < 1 or self.max_concurrent_runs < 1:
            raise ValueError("--max-model-configs and --max-concurrent-runs must be >= 1")


LLM_CHOICES = ("local", "endpoint")


def _number(x):
    """A page number as a float (Gradio gives int, float or None); anything else is left for TurnPolicy to refuse."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else x


def _settings(threshold, action_delay_s, timeout_s, stop_silence_s, llm, voice, hedging, detector,
              panes=PANES_SEQUENTIAL, *, server: DemoConfig = DemoConfig()):
    """DemoSettings from the page's values; the endpoint (llm == "endpoint") comes from `server` only."""
    text = str(threshold or "").strip()
    try:
        thr = float(text) if text else None
    except ValueError:
        raise InputError(f"threshold must be a number or empty (the detector's default), got {text!r}") from None
    if llm not in LLM_CHOICES:
        raise InputError(f"LLM backend must be one of {LLM_CHOICES}, got {llm!r}")
    if llm == "endpoint" and not server.llm_endpoint:
        raise InputError("no LLM endpoint is configured on this server (pipeline demo --llm-endpoint URL "
                         "--llm-model NAME); use the local model")
    if voice not in VOICES:
        raise InputError(f"TTS voice must be one of {VOICES}, got {voice!r}")
    if detector != "auto" and detector not in DEMO_DETECTOR_CHOICES:
        raise InputError(f"semantic detector must be auto or one of {DEMO_DETECTOR_CHOICES}, got {detector!r}")
    if panes not in PANE_MODES:
        raise InputError(f"panes must be one of {PANE_MODES}, got {panes!r}")
    dets = (detector,) + tuple(d for d in DEMO_DETECTORS if d != detector) if detector != "auto" else DEMO_DETECTORS
    remote = llm == "endpoint"
    try:  # the one validation of a policy (TurnPolicy), its message shown on the page
        policy = dataclasses.replace(default_pipeline_policy(), threshold=thr, action_delay_s=_number(action_delay_s),
                                     timeout_s=_number(timeout_s), stop_silence_s=_number(stop_silence_s))
    except (TypeError, ValueError) as e:
        raise InputError(f"turn policy: {e}") from None
    return DemoSettings(policy=policy, llm="openai" if remote else "local",
                        base_url=server.llm_endpoint if remote else "", model=server.llm_model if remote else "",
                        api_key_env=server.llm_api_key_env, voice=voice, hedging=bool(hedging), detectors=dets,
                        panes=panes)


def _outputs(status: str, results, history):
    """Values for [status, *per-pane (title, timeline, transcript, audio, verdict), table, history]."""
    import gradio as gr

    out = [status]
    for pane in PANES:
        if results is None:
            out += [gr.update()] * 5
        else:
            v = pane_view(results[pane])
            out += [v["title"], v["timeline"], v["transcript"], v["audio"], v["verdict"]]
    return out + [running_table(history), history]


def _run(make_source, settings_args, history, server: DemoConfig = DemoConfig()):
    try:
        s = _settings(*settings_args, server=server)
        source, label = make_source()
        results = compare(source, s)
    except InputError as e:
        return _outputs(f"**Cannot run:** {e}", None, history)
    except Exception as e:  # noqa: BLE001 - the page gets a message, the log the traceback
        log.exception("demo run failed")
        return _outputs(f"**Error:** {type(e).__name__}: {e}", None, history)
    history = add_to_history(history, results)
    det = results["semantic"].detector
    return _outputs(f"Done: {label} (semantic detector `{det}`).{_fallback_note(results)}", results, history)


def _fallback_note(results) -> str:
    """' **The LLM endpoint failed** ...' when a pane's endpoint fell back to the local model this run."""
    events = [e for r in results.values() for e in getattr(r, "llm_fallbacks", ())]
    if not events:
        return ""
    return f" **The LLM endpoint failed; the local model answered** ({len(events)}x: {events[0]})"


def _remove_upload(path) -> None:
    """Delete an uploaded file once its run is over (accepted or rejected), if it is in Gradio's upload
    folder; never anything else."""
    import os
    import tempfile
    from pathlib import Path

    if not path:
        return
    p = Path(getattr(path, "name", path)).resolve()
    roots = [Path(os.environ.get("GRADIO_TEMP_DIR", Path(tempfile.gettempdir()) / "gradio")).resolve()]
    if any(p.is_relative_to(r) for r in roots) and p.is_file():
        p.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            p.parent.rmdir()  # Gradio puts each upload in its own folder


MAX_UPLOAD_BYTES = 25 * 2**20  # Gradio refuses larger uploads before they are stored (60 s of 48 kHz stereo float)
RUN_GROUP = "run"  # the Gradio concurrency group of every event that plays audio through the pipelines


def _end_live(sess) -> None:
    """Return a live session's models (the page's state was deleted, or its browser went away)."""
    if sess is not None:
        sess.close()


def build_app(cfg: DemoConfig | None = None):
    import gradio as gr

    cfg = cfg or DemoConfig()
    clips = real_clips()
    callers = getgoing_samples()
    evals, evals_root, evals_note = eval_source()
    # One server-wide run limit: every event that plays audio (samples, callers, clips, uploads, the microphone's
    # stream and its stop) is in one Gradio concurrency group, so a run beyond the limit waits in the queue (the
    # page shows its position) instead of being refused, and no two buttons overlap on the cores.
    run_limit = dict(concurrency_id=RUN_GROUP, concurrency_limit=cfg.max_concurrent_runs)
    live_by_page: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # session hash -> LiveSession
    ttl_s = int(round(cfg.files_ttl_s))
    with gr.Blocks(title="vad-turn demo: semantic vs VAD-only", delete_cache=(max(1, ttl_s // 5), ttl_s)) as app:
        history = gr.State({})
        # a live session's state is deleted (and its models returned) 60 s after its last chunk at the latest
        live = gr.State(None, time_to_live=LIVE_MAX_S + 60, delete_callback=_end_live)
        gr.Markdown(INTRO)
        with gr.Accordion("Settings", open=False):
            with gr.Row():
                pol = default_pipeline_policy()
                threshold = gr.Textbox(f"{pol.threshold:g}", label="threshold (empty: the detector's default)")
                action_delay = gr.Number(pol.action_delay_s, label="action delay s", minimum=0, maximum=5)
                timeout = gr.Number(pol.timeout_s, label="timeout s", minimum=0.1, maximum=10)
                stop_silence = gr.Number(pol.stop_silence_s, label="VAD-only stop_silence_s", minimum=0.05, maximum=5)
                detector = gr.Dropdown(["auto", *DEMO_DETECTOR_CHOICES], value="auto", label="semantic detector")
            with gr.Row():
                llm = gr.Radio(list(LLM_CHOICES) if cfg.llm_endpoint else ["local"], value="local",
                               label="LLM backend")
                gr.Markdown(f"endpoint (server setting): `{cfg.llm_model}` at `{cfg.llm_endpoint}`" if cfg.llm_endpoint
                            else "endpoint: none configured (`pipeline demo --llm-endpoint URL --llm-model NAME`)")
                voice = gr.Dropdown(list(VOICES), value=VOICES[0], label="TTS voice")
                hedging = gr.Checkbox(False, label="hedging (two requests, first token wins)")
                panes = gr.Radio(list(PANE_MODES), value=PANES_SEQUENTIAL, label="panes (at once: they share the "
                                 "cores and slow each other)", elem_id="panes")
            gr.Markdown(policy_note(), elem_id="policy-note")
        settings = [threshold, action_delay, timeout, stop_silence, llm, voice, hedging, detector, panes]
        with gr.Tab("Compare"):
            with gr.Row():
                with gr.Column():
                    sample = gr.Dropdown(list(SAMPLES), value=SAMPLES[0], label="scripted sample", elem_id="sample")
                    run_sample = gr.Button("Run sample", variant="primary", elem_id="run-sample")
                with gr.Column():
                    caller = gr.Dropdown(list(callers), value=next(iter(callers), None), elem_id="caller",
                                         label="real caller (GetGoing test turn)" if callers else
                                         "real caller: none built (vad-turn build-getgoing, or restart the demo "
                                         "with the data root present)")
                    run_caller = gr.Button("Run caller turn", elem_id="run-caller")
                with gr.Column():
                    clip = gr.Dropdown(list(clips), value=next(iter(clips), None), label="real clip (data root)")
                    clip_player = gr.Audio(str(clips[next(iter(clips))]) if clips else None, label="listen",
                                           type="filepath", interactive=False)
                    run_clip = gr.Button("Run clip")
                with gr.Column():
                    upload = gr.File(label="upload audio (WAV/FLAC/OGG, at most 60 s)", elem_id="upload")
                    run_upload = gr.Button("Run upload", elem_id="run-upload")
                with gr.Column():
                    mic = gr.Audio(sources=["microphone"], streaming=True, elem_id="mic",
                                   label="live microphone (semantic live; VAD-only replays it, or both at once)")
            status = gr.Markdown("Pick an input and run it.", elem_id="status")
            pane_outs = []
            with gr.Row():
                for pane in PANES:
                    with gr.Column():
                        pane_outs += [gr.Markdown(f"### {PANE_TITLES[pane]}", elem_id=f"title-{pane}"),
                                      gr.Image(label="timeline", type="pil", elem_id=f"timeline-{pane}",
                                               show_label=False),
                                      gr.Textbox(label="transcript", lines=4, elem_id=f"transcript-{pane}"),
                                      gr.Audio(label="conversation audio (you + agent)", elem_id=f"audio-{pane}"),
                                      gr.Markdown(elem_id=f"verdict-{pane}")]
            table = gr.Dataframe(headers=TABLE_HEADERS, label="running table (this browser session)",
                                 elem_id="running-table", interactive=False)
        outs = [status, *pane_outs, table, history]

        def on_sample(name, *args):
            return _run(lambda: (sample_scenario(name), f"sample '{name}'"), args[:-1], args[-1], cfg)

        def on_caller(name, *args):
            def src():
                if not name or name not in callers:
                    raise InputError("no GetGoing test turns built: run `vad-turn build-getgoing` (or restart the demo "
                                     "with the data root present: it builds a few test calls)")
                return callers[name], f"caller {name.split(':')[0]}"
            return _run(src, args[:-1], args[-1], cfg)

        def on_clip(name, *args):
            def src():
                if not name or name not in clips:
                    raise InputError("no real clip found under the data root (set VAD_TURN_DATA_ROOT)")
                return check_upload(clips[name]), f"clip {name}"
            return _run(src, args[:-1], args[-1], cfg)

        def on_upload(f, *args):
            try:
                return _run(lambda: (check_upload(getattr(f, "name", f)), "upload"), args[:-1], args[-1], cfg)
            finally:
                _remove_upload(f)

        run_sample.click(on_sample, [sample, *settings, history], outs, **run_limit)
        run_caller.click(on_caller, [caller, *settings, history], outs, **run_limit)
        run_clip.click(on_clip, [clip, *settings, history], outs, **run_limit)
        run_upload.click(on_upload, [upload, *settings, history], outs, **run_limit)
        clip.change(lambda n: str(clips[n]) if n in clips else None, clip, clip_player)

        def on_mic_chunk(chunk, sess, *args, request: gr.Request = None):
            from .live import LiveSession
            try:
                if sess is None:
                    sess = LiveSession(_settings(*args, server=cfg), max_s=LIVE_MAX_S, idle_s=cfg.live_idle_s)
                    if request is not None and request.session_hash:
                        live_by_page[request.session_hash] = sess
                if chunk is not None:
                    sess.feed(*chunk)
                return sess, f"Listening... {sess.stream_s:.1f} s heard. Stop recording for the results."
            except InputError as e:
                return sess, f"**Live input:** {e}"

        def on_page_closed(request: gr.Request):
            sess = live_by_page.pop(request.session_hash, None) if request is not None else None
            _end_live(sess)

        for fn in (on_mic_chunk, on_page_closed):  # Gradio finds gr.Request by annotation; this module's are strings
            fn.__annotations__["request"] = gr.Request

        def on_mic_stop(sess, hist):
            if sess is None:
                return _outputs("**Live input:** nothing was recorded", None, hist) + [None]
            ended = sess.ended
            try:
                results = sess.finish()
            except InputError as e:
                return _outputs(f"**Live input:** {e}", None, hist) + [None]
            except Exception as e:  # noqa: BLE001
                log.exception("live run failed")
                return _outputs(f"**Error:** {type(e).__name__}: {e}", None, hist) + [None]
            hist = add_to_history(hist, results)
            note = f" The live session had ended ({ended}): both panes replayed the recording." if ended else ""
            return _outputs(f"Done: live microphone input.{note}", results, hist) + [None]

        mic.stream(on_mic_chunk, [mic, live, *settings], [live, status], stream_every=0.5,
                   time_limit=int(LIVE_MAX_S), **run_limit)
        mic.stop_recording(on_mic_stop, [live, history], outs + [live], **run_limit)
        app.unload(on_page_closed)
        with gr.Tab("Turn model evaluation"):
            if evals:
                if evals_note:
                    gr.Markdown(evals_note, elem_id="eval-source")
                labels = [run_label(p, evals_root) for p in evals]
                pick = gr.Dropdown(labels, value=labels[0], label="evaluation run (runs/eval-*, runs/headline/*)"
                                   if not evals_note else "evaluation run (committed results)")
                first = eval_view(evals[0])
                ev_title = gr.Markdown(f"### {first['title']}")
                ev_plot = gr.Image(first["pareto"], label="Pareto frontier", type="filepath")
                ev_ops = gr.Dataframe(value=first["ops"], headers=OP_HEADERS, label="operating points")
                ev_md = gr.Markdown(first["markdown"])

                def on_pick(label):
                    v = eval_view(evals[labels.index(label)])
                    return f"### {v['title']}", v["pareto"], v["ops"], v["markdown"]

                pick.change(on_pick, pick, [ev_title, ev_plot, ev_ops, ev_md])
            else:
                gr.Markdown("No evaluation run yet and no committed results: `vad-turn headline` or `vad-turn "
                            "evaluate` writes one under runs/.")
        with gr.Tab("Prosody"):
            pr, pr_note = prosody_source()
            if pr is not None:
                if pr_note:
                    gr.Markdown(pr_note, elem_id="prosody-source")
                v = prosody_view(pr)
                gr.Gallery(v["plots"], label=f"plots of {pr.name}", columns=2)
                gr.Markdown(v["markdown"])
            else:
                gr.Markdown("No prosody run yet and no committed results: `prosody run` writes runs/prosody-default/.")
    return app


def run(cfg: DemoConfig) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from .session import POOL

    # one set per configuration per admitted run (the run limit is server-wide), so at most max_model_configs x
    # max_concurrent_runs sets are loaded; a run waits a little for a live session's set to come back
    POOL.max_keys, POOL.max_sets, POOL.wait_s = cfg.max_model_configs, cfg.max_concurrent_runs, cfg.live_idle_s + 5.0
    if cfg.preload:
        print("loading models for both panes ...", flush=True)
        with POOL.acquire(DemoSettings()) as sets:
            print(f"semantic pane: {sets['semantic'].detector_name}", flush=True)
        prepare_callers()
    app = build_app(cfg)
    print(f"demo at http://{cfg.host}:{cfg.port}", flush=True)
    app.queue(default_concurrency_limit=cfg.max_concurrent_runs).launch(
        server_name=cfg.host, server_port=cfg.port, share=cfg.share, show_error=False, allowed_paths=allowed_paths(),
        max_file_size=MAX_UPLOAD_BYTES)
    return 0


def prepare_callers() -> None:
    """Make sure real caller turns are there to pick: the GetGoing build, or a small build of a few test calls
    from the data root (once: 16 calls in ~17 s here); without the data root the page says how to get them."""
    from vad_turn.core.config import default_data_root

    from pipeline.bench.getgoing_scenarios import ensure_getgoing_build

    if not (default_data_root() / "getgoing" / "calls").is_dir():
        print(f"no GetGoing calls under {default_data_root()}: the real-caller samples are off", flush=True)
        return
    print("preparing the real-caller samples (GetGoing test calls) ...", flush=True)
    try:
        root = ensure_getgoing_build()
    except Exception as e:  # noqa: BLE001 - the demo runs without them; the page says how to build them
        log.warning("real-caller samples unavailable: %s", e)
        return
    print(f"real callers: {len(getgoing_samples(root))} GetGoing test turns from {root}", flush=True)


def allowed_paths() -> list[str]:
    """What the page may serve from disk: the run folders (plots, reports), the committed results and the
    real clips it lists, file by file -- not the data root, whose corpora carry their own licences (SWDA is
    non-commercial)."""
    from vad_turn.core.config import default_runs_root
    from vad_turn.harness.results import COMMITTED_RESULTS_DIR

    return [str(default_runs_root()), str(COMMITTED_RESULTS_DIR)] + [str(p) for p in real_clips().values()]
