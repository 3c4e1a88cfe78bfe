"""The low layer every other package builds on; it imports nothing above it.

audio I/O and checks (`audio`), the text types and turn rows (`schema`), config dataclasses and the CLI
generated from them (`config`, `cli`), run folders and atomic writes (`runs`), ONNX sessions and CPU
checks (`onnx`), model files with checksums and the shipped model folders (`model_files`), stable
hashes of ids and the seeded turn selections (`seeds`), the torch training loop (`train`) and the set-up
self-check (`setup_check`).
The speech engines (VAD, STT, TTS, LLM) are a package of their own above it: `vad_turn.engines`.
"""
