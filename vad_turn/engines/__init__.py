"""The speech engines, each behind one small interface, shared by the data, harness, prosody and pipeline layers.

It imports only `vad_turn.core`. Engines load their models inside functions, never at import.

- `vad`: frame-level voice activity detectors (Silero, WebRTC, TEN, energy) behind `FrameVAD` / `StreamingVAD`.
- `stt`: streaming speech-to-text behind `StreamingSTT` (PocketSphinx, Whisper, Moonshine in `stt_moonshine`,
  shared pieces in `stt_common`), with the measured word lags in `stt_lag.json` and the n-gram LM
  estimator of PocketSphinx's domain model (`arpa_lm`).
- `tts`: the local TTS voices (espeak, flite, festival).
- `llm`: the LLM protocol, the local models and an OpenAI-compatible client.
"""
