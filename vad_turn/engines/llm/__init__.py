"""The LLM engines: one small protocol, the local models (SmolLM2, Gemma 3) and an OpenAI-compatible client."""
