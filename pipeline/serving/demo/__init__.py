"""The Gradio demo: semantic endpointing beside VAD-only, on scripted samples, clips, uploads and the microphone.

`samples` (inputs and their checks), `session` (two panes run at once, model pool), `live`
(microphone streaming), `reports` (evaluation and prosody tabs), `app` (the thin Gradio wiring;
`pipeline demo` / `make demo` start it at http://127.0.0.1:7860).
"""
