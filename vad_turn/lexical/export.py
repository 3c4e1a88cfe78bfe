"""Export of the lexical GRU: the step graph (token ids + state -> state) and the head graph
(state + timing -> p_eot) in ONNX, checked against torch, and the model folder they live in.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from vad_turn.core.runs import atomic_write_json

from .config import LexicalConfig
from .runtime import CONTEXT_MAX_TOKENS, TIMING_FEATURES, LexicalTokenizer


def export_onnx(model, out_dir: Path, *, atol: float = 1e-4) -> dict:
    """Write lexical_step.onnx and lexical_head.onnx (opset 17) of `model` into `out_dir` and check
    them against torch on random inputs; raises RuntimeError when they disagree by more than `atol`."""
    import torch
    from torch import nn

    from vad_turn.core.onnx import import_onnxruntime

    ort = import_onnxruntime()
    model = model.eval()
    out_dir = Path(out_dir)
    hidden = model.gru.hidden_size

    class Step(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, token_ids, h0):
            return self.m.step(token_ids, h0)

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, h, timing):
            return self.m.head_prob(h, timing)

    ids = torch.tensor([[1, 905, 2]], dtype=torch.int64)
    h0 = torch.zeros(1, 1, hidden)
    timing = torch.zeros(2, len(TIMING_FEATURES))
    with torch.no_grad():  # eval-mode wrappers: exporting restores each module's training flag afterwards
        torch.onnx.export(Step().eval(), (ids, h0), str(out_dir / "lexical_step.onnx"), input_names=["token_ids", "h0"],
                          output_names=["h"], dynamic_axes={"token_ids": {1: "n_tokens"}}, opset_version=17,
                          dynamo=False)
        torch.onnx.export(Head().eval(), (torch.zeros(2, hidden), timing), str(out_dir / "lexical_head.onnx"),
                          input_names=["h", "timing"], output_names=["p_eot"],
                          dynamic_axes={"h": {0: "n"}, "timing": {0: "n"}, "p_eot": {0: "n"}}, opset_version=17,
                          dynamo=False)
    g = torch.Generator().manual_seed(0)
    step = ort.InferenceSession(str(out_dir / "lexical_step.onnx"), providers=["CPUExecutionProvider"])
    head = ort.InferenceSession(str(out_dir / "lexical_head.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randint(0, model.id_map.numel(), (1, 7), generator=g)
    h = torch.randn(1, 1, hidden, generator=g) * 0.5
    hs, tm = torch.randn(16, hidden, generator=g) * 0.5, torch.rand(16, len(TIMING_FEATURES), generator=g) * 2
    with torch.no_grad():
        d_step = float(np.abs(step.run(None, {"token_ids": x.numpy(), "h0": h.numpy()})[0] - model.step(x, h).numpy()).max())
        d_head = float(np.abs(head.run(None, {"h": hs.numpy(), "timing": tm.numpy()})[0]
                              - model.head_prob(hs, tm).numpy()).max())
    if not (d_step <= atol and d_head <= atol):
        raise RuntimeError(f"ONNX export of the lexical model disagrees with torch: step {d_step:.2e}, "
                           f"head {d_head:.2e} (tolerance {atol:g})")
    return {"max_abs_diff_step": d_step, "max_abs_diff_head": d_head}



def save_model_folder(model, cfg: LexicalConfig, tok: LexicalTokenizer, n_emb: int, out_dir: Path,
                      metrics: dict) -> Path:
    """model.pt + lexical.json + tokenizer.json + the two ONNX files, written to a temporary folder
    and renamed into place."""
    import torch

    from vad_turn.core.runs import atomic_dir

    with atomic_dir(Path(out_dir)) as tmp:
        torch.save(model.state_dict(), tmp / "model.pt")
        shutil.copyfile(tok.path, tmp / "tokenizer.json")
        parity = export_onnx(model, tmp)
        atomic_write_json(tmp / "lexical.json", {
            "n_emb": n_emb, "emb_dim": cfg.emb_dim, "hidden": cfg.hidden, "head_hidden": cfg.head_hidden,
            "context_max_tokens": CONTEXT_MAX_TOKENS, "timing_features": list(TIMING_FEATURES),
            "special_ids": {"bos": tok.bos_id, "sep": tok.sep_id}, "transcript_lag_s": cfg.transcript_lag_s,
            "onnx_parity": parity, **metrics})
        (tmp / "lexical.json").chmod(0o644)
    return Path(out_dir)
