"""The streaming voice-agent pipeline, in three rooms that import one way (runtime <- bench <- serving):

- `runtime`: what runs a conversation: the frame vocabulary (`frames`), clocks, processors, observers,
  the LLM wrappers, tools, and `runner` (config, loaded models, real-time input).
- `bench`: what measures it: the end-to-end latency bench (`e2e`) with its scenarios, report, plots and
  statistics, the per-turn timeline, and the STT / LLM measurements.
- `serving`: what serves it: the Gradio demo (`demo`) and an OpenAI-compatible LLM server (`llm_server`).

`cli` is the `pipeline` command.
"""
