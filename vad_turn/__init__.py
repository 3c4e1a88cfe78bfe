"""vad_turn: end-of-turn detection for streaming voice agents.

The public API (imported lazily: `import vad_turn` loads no model and no heavy library):

    from vad_turn import load_turn_model, predict_eot, make_detector, Detector
    model = load_turn_model()                        # shipped fused model (numpy + onnxruntime + tokenizers)
    p = predict_eot(audio, 8000, words, messages, silence_s=0.4, model=model)
    det = make_detector("fused")                     # any registered detector, for the evaluation harness
"""
from __future__ import annotations

__all__ = ["load_turn_model", "predict_eot", "Detector", "make_detector"]

_WHERE = {"load_turn_model": "fusion.runtime", "predict_eot": "fusion.runtime", "Detector": "harness.detectors",
          "make_detector": "harness.detectors"}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'vad_turn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
