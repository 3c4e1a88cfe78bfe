"""The low layer every other package builds on; it imports nothing above it.

audio I/O and checks (`audio`), the text types and turn rows (`schema`), config dataclasses and the CLI
generated from them (`config`, `cli`), run folders and atomic writes (`runs`), ONNX sessions and CPU
checks (`onnx`), model files with checksums and the shipped model folders (`model_files`), stable
hashes of ids (`seeds`), the speech engines the data, prosody and pipeline layers share (`voices` for
TTS, `stt`, the `llm` loader and its speed settings), the torch training loop (`train`) and the set-up
self-check (`setup_check`).
"""
