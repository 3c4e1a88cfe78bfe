"""The Gradio app: two agent panes (VAD-only, semantic) on the same input, settings, report tabs.

Thin wiring only: inputs -> `samples` / `session.compare` / `live.LiveSession` -> `views`. Every
handler turns bad input into a status message (never a stack trace in the page), and all per-user
state lives in `gr.State` (a history of scored turns, a live session), so browser sessions do not
share state; loaded models are lent per run by `session.POOL`.

    pipeline demo                      # http://127.0.0.1:7860
    pipeline demo --port 7861 --share  # Gradio share link
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .reports import OP_HEADERS, eval_view, find_eval_runs, find_prosody_run, prosody_view, run_label
from .samples import SAMPLES, InputError, check_upload, real_clips, sample_scenario
from .session import DEMO_DETECTORS, PANE_TITLES, PANES, DemoSettings, compare
from .views import TABLE_HEADERS, add_to_history, pane_view, running_table

log = logging.getLogger("pipeline.demo")
VOICES = ("espeak:en-us+f3", "espeak:en-us", "espeak:en+m3", "flite:slt", "festival:cmu_us_slt_arctic_hts")
INTRO = """# Semantic endpointing vs VAD-only, side by side
Both agents hear the same audio at the same time, in real time. **VAD-only** ends your turn after
`stop_silence_s` of silence; **semantic** asks an end-of-turn model (p_eot) during each silence and
ends the turn when p_eot passes the threshold after the action delay, or at the timeout. Run a
scripted sample (the *hesitation* sample pauses 1 s after "a flight to, um"), a real clip, an upload,
or talk into the microphone. Each pane shows per turn: the timeline, the transcript, the agent's
audio, and the running P50/P99 latency and false cut-off table."""


@dataclass(frozen=True)
class DemoConfig:
    host: str = field(default="127.0.0.1", metadata={"help": "address to serve on"})
    port: int = field(default=7860, metadata={"help": "port (7860 as in `make demo`)"})
    share: bool = field(default=False, metadata={"help": "also open a public Gradio share link"})
    preload: bool = field(default=True, metadata={"help": "load the models before serving (first run is faster)"})


def _settings(threshold, action_delay_s, timeout_s, stop_silence_s, llm, base_url, model, voice, hedging, detector):
    text = str(threshold or "").strip()
    try:
        thr = float(text) if text else None
    except ValueError:
        raise InputError(f"threshold must be a number or empty (the detector's default), got {text!r}") from None
    dets = (detector,) + tuple(d for d in DEMO_DETECTORS if d != detector) if detector != "auto" else DEMO_DETECTORS
    return DemoSettings(threshold=thr, action_delay_s=float(action_delay_s), timeout_s=float(timeout_s),
                        stop_silence_s=float(stop_silence_s), llm=llm, base_url=base_url or "", model=model or "",
                        voice=voice, hedging=bool(hedging), detectors=dets)


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


def _run(make_source, settings_args, history):
    try:
        s = _settings(*settings_args)
        source, label = make_source()
        results = compare(source, s)
    except InputError as e:
        return _outputs(f"**Cannot run:** {e}", None, history)
    except Exception as e:  # noqa: BLE001 - the page gets a message, the log the traceback
        log.exception("demo run failed")
        return _outputs(f"**Error:** {type(e).__name__}: {e}", None, history)
    history = add_to_history(history, results)
    det = results["semantic"].detector
    return _outputs(f"Done: {label} (semantic detector `{det}`).", results, history)


def build_app():
    import gradio as gr

    clips = real_clips()
    evals = find_eval_runs()
    with gr.Blocks(title="vad-turn demo: semantic vs VAD-only") as app:
        history = gr.State({})
        live = gr.State(None)
        gr.Markdown(INTRO)
        with gr.Accordion("Settings", open=False):
            with gr.Row():
                threshold = gr.Textbox("", label="threshold (empty: the detector's default)")
                action_delay = gr.Number(0.2, label="action delay s", minimum=0, maximum=5)
                timeout = gr.Number(1.5, label="timeout s", minimum=0.1, maximum=10)
                stop_silence = gr.Number(0.6, label="VAD-only stop_silence_s", minimum=0.05, maximum=5)
                detector = gr.Dropdown(["auto", *DEMO_DETECTORS], value="auto", label="semantic detector")
            with gr.Row():
                llm = gr.Radio(["local", "openai"], value="local", label="LLM backend")
                base_url = gr.Textbox("", label="endpoint (openai backend), e.g. http://127.0.0.1:8000/v1")
                model = gr.Textbox("", label="model name at the endpoint")
                voice = gr.Dropdown(list(VOICES), value=VOICES[0], label="TTS voice", allow_custom_value=True)
                hedging = gr.Checkbox(False, label="hedging (two requests, first token wins)")
        settings = [threshold, action_delay, timeout, stop_silence, llm, base_url, model, voice, hedging, detector]
        with gr.Tab("Compare"):
            with gr.Row():
                with gr.Column():
                    sample = gr.Dropdown(list(SAMPLES), value=SAMPLES[0], label="scripted sample")
                    run_sample = gr.Button("Run sample", variant="primary", elem_id="run-sample")
                with gr.Column():
                    clip = gr.Dropdown(list(clips), value=next(iter(clips), None), label="real clip (data root)")
                    clip_player = gr.Audio(str(clips[next(iter(clips))]) if clips else None, label="listen",
                                           type="filepath", interactive=False)
                    run_clip = gr.Button("Run clip")
                with gr.Column():
                    upload = gr.File(label="upload audio (WAV/FLAC/OGG, at most 60 s)", elem_id="upload")
                    run_upload = gr.Button("Run upload", elem_id="run-upload")
                with gr.Column():
                    mic = gr.Audio(sources=["microphone"], streaming=True, label="live microphone (both panes)")
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
            return _run(lambda: (sample_scenario(name), f"sample '{name}'"), args[:-1], args[-1])

        def on_clip(name, *args):
            def src():
                if not name or name not in clips:
                    raise InputError("no real clip found under the data root (set VAD_TURN_DATA_ROOT)")
                return check_upload(clips[name]), f"clip {name}"
            return _run(src, args[:-1], args[-1])

        def on_upload(f, *args):
            return _run(lambda: (check_upload(getattr(f, "name", f)), "upload"), args[:-1], args[-1])

        run_sample.click(on_sample, [sample, *settings, history], outs)
        run_clip.click(on_clip, [clip, *settings, history], outs)
        run_upload.click(on_upload, [upload, *settings, history], outs)
        clip.change(lambda n: str(clips[n]) if n in clips else None, clip, clip_player)

        def on_mic_chunk(chunk, sess, *args):
            from .live import LiveSession
            try:
                if sess is None:
                    sess = LiveSession(_settings(*args))
                if chunk is not None:
                    sess.feed(*chunk)
                return sess, f"Listening... {sess.stream_s:.1f} s heard by both panes. Stop recording for the results."
            except InputError as e:
                return sess, f"**Live input:** {e}"

        def on_mic_stop(sess, hist):
            if sess is None:
                return _outputs("**Live input:** nothing was recorded", None, hist) + [None]
            try:
                results = sess.finish()
            except InputError as e:
                return _outputs(f"**Live input:** {e}", None, hist) + [None]
            except Exception as e:  # noqa: BLE001
                log.exception("live run failed")
                return _outputs(f"**Error:** {type(e).__name__}: {e}", None, hist) + [None]
            hist = add_to_history(hist, results)
            return _outputs("Done: live microphone input.", results, hist) + [None]

        mic.stream(on_mic_chunk, [mic, live, *settings], [live, status], stream_every=0.5, time_limit=60)
        mic.stop_recording(on_mic_stop, [live, history], outs + [live])
        with gr.Tab("Turn model evaluation"):
            if evals:
                labels = [run_label(p) for p in evals]
                pick = gr.Dropdown(labels, value=labels[0], label="evaluation run (runs/eval-*, runs/headline/*)")
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
                gr.Markdown("No evaluation run yet: `vad-turn headline` or `vad-turn evaluate` writes one under runs/.")
        with gr.Tab("Prosody"):
            pr = find_prosody_run()
            if pr is not None:
                v = prosody_view(pr)
                gr.Gallery(v["plots"], label=f"plots of {pr.name}", columns=2)
                gr.Markdown(v["markdown"])
            else:
                gr.Markdown("No prosody run yet: `prosody run` writes runs/prosody-default/.")
    return app


def run(cfg: DemoConfig) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if cfg.preload:
        from .session import POOL

        print("loading models for both panes ...", flush=True)
        with POOL.acquire(DemoSettings()) as sets:
            print(f"semantic pane: {sets['semantic'].detector_name}", flush=True)
    app = build_app()
    print(f"demo at http://{cfg.host}:{cfg.port}", flush=True)
    app.queue(default_concurrency_limit=2).launch(server_name=cfg.host, server_port=cfg.port, share=cfg.share,
                                                 show_error=False, allowed_paths=[str(p) for p in _allowed()])
    return 0


def _allowed():
    from vad_turn.config import default_data_root, default_runs_root

    return [default_runs_root(), default_data_root()]
