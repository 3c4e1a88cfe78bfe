"""The lexical model family: the GRU in torch (`model`), options (`config`), ONNX export (`export`),
the torch-free runtime and detector (`runtime`), training (`train`) and the baselines (`baselines`:
the logistic-regression floor and zero-shot SmolLM2)."""
