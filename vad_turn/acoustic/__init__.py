"""The acoustic model family: features (`features`), the torch model (`model`), ONNX export
(`export`), the harness detector (`runtime`), training (`train`) and its report / model card (`report`)."""
