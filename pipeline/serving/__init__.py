"""Serving the pipeline: the Gradio demo (`demo`) and an OpenAI-compatible chat-completions server around any
LLM (`llm_server`). It builds on `pipeline.runtime` and reuses the bench's scenarios and scoring."""
