"""The acoustic model family: features (`features`), the torch model (`model`), ONNX export
(`export`), the exported graph's one call, torch-free (`session`), the harness detector (`runtime`),
training (`train`) and its report / model card (`report`)."""
