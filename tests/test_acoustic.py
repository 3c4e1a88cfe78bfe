"""The acoustic model: size bound, ONNX export parity (fp32 / int8) and its errors, training lowers the
loss on real rendered turns, the detector through the harness registry, and audio input handling."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"

from vad_turn.acoustic.export import ExportError, export_onnx, make_session, quantize_int8, run_session  # noqa: E402
from vad_turn.acoustic.features import FeatureConfig, window_audio  # noqa: E402
from vad_turn.acoustic.model import DEFAULT_MODEL_DIR, AcousticModelConfig, AcousticNet, load_model, save_model
from vad_turn.acoustic.runtime import query_window
from vad_turn.acoustic.train import AcousticTrainConfig, bce_loss, build_feature_set, predict_features  # noqa: E402
from vad_turn.core.audio import AudioError, load_audio, resample, telephony_8k  # noqa: E402
from vad_turn.core.config import config_from_dict  # noqa: E402
from vad_turn.core.schema import Message, TurnRecord, Word, silence_spans_from_words  # noqa: E402
from vad_turn.data.render import RenderConfig, render_rows  # noqa: E402
from vad_turn.harness.detectors import make_detector  # noqa: E402
from vad_turn.harness.evaluate import EvalConfig, evaluate_detector  # noqa: E402

SR = 16_000
MB = 1024 * 1024
torch.set_num_threads(1)
# Real-looking turns: (word or None for a hold, seconds). Holds after "and" / "uh" / a complete clause.
TURNS = [
    [("well", 0.3), ("I", 0.1), ("went", 0.3), ("and", 0.2), (None, 0.9), ("bought", 0.3), ("bread", 0.4)],
    [("I", 0.1), ("think", 0.3), ("uh", 0.3), (None, 0.7), ("it", 0.1), ("was", 0.2), ("Tuesday", 0.5)],
    [("yes", 0.4)],
    [("we", 0.2), ("could", 0.2), ("try", 0.3), ("because", 0.4), (None, 1.2), ("it", 0.1), ("works", 0.4)],
    [("no", 0.3), ("not", 0.3), ("really", 0.4)],
    [("my", 0.2), ("sister", 0.4), ("lives", 0.3), ("in", 0.1), (None, 0.6), ("Texas", 0.5), ("now", 0.3)],
]


def _turn(i: int, spec) -> TurnRecord:
    t, words = 0.0, []
    for w, d in spec:
        if w is not None:
            words.append(Word(w, t, t + d))
        t += d
    return TurnRecord(id=f"sw9{i}-A-0001", source="switchboard", split="val", words=words,
                      silence_spans=silence_spans_from_words(words, t + 0.6), messages=[Message("assistant", "so")],
                      conversation=f"sw9{i}", speaker="A")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> list[TurnRecord]:
    """The turns above spoken by real TTS voices (espeak / flite) with their real holds and a 3 s tail."""
    tmp = tmp_path_factory.mktemp("render")
    cfg = RenderConfig(built_root=tmp, out_root=tmp, workers=1, condition_splits=(), tail_s=3.0,
                       voices=("espeak:en-us", "espeak:en-us+f3", "flite:slt", "flite:awb"))
    out = render_rows([_turn(i, s).to_row() for i, s in enumerate(TURNS)], cfg, "switchboard")
    assert out["skipped"] == [] and len(out["records"]) == len(TURNS)
    return out["records"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("acoustic")


@pytest.fixture(scope="module")
def tiny_cfg(workdir) -> AcousticTrainConfig:
    return AcousticTrainConfig(epochs=12, batch_size=16, lr=3e-3, threads=1, points_per_span=8, out=workdir / "run",
                               model=AcousticModelConfig(features=FeatureConfig(window_s=2.0), conv_channels=32,
                                                         lstm_hidden=32, head_hidden=16, dropout=0.0))


@pytest.fixture(scope="module")
def trained(rendered, tiny_cfg):
    """A small model trained by `train.fit` on the rendered turns: (net, features, loss before, loss after)."""
    from vad_turn.core.train import fit

    fs = build_feature_set([("switchboard-rendered:val", rendered)], tiny_cfg, train=True)
    torch.manual_seed(0)
    net = AcousticNet(tiny_cfg.model)

    def loss_on_all():
        net.eval()
        with torch.no_grad():
            return float(bce_loss(net, (fs.feats, fs.silence_s, fs.label)))

    before = loss_on_all()
    fit(net, fs, fs, tiny_cfg, loss_fn=bce_loss)
    return net, fs, before, loss_on_all()


def real_windows(data_root: Path, cfg, rendered):
    """Real-speech windows (two public clips every 0.5 s, the rendered turns every 0.25 s) with silence times."""
    wins, sil = [], []
    rng = np.random.default_rng(0)
    clips = [load_audio(data_root / "clips" / n) for n in ("jfk.flac", "silero_test.wav")]
    clips += [load_audio_bytes(r) for r in rendered]
    for k, clip in enumerate(clips):
        step = 8000 if k < 2 else 4000
        for end in range(step, clip.size, step):
            wins.append(window_audio(clip[:end], cfg))
            sil.append(rng.choice([0.0, 0.2, 0.5, 1.0, 2.0]))
    return np.stack(wins), np.array(sil, np.float32)


def load_audio_bytes(rec: TurnRecord) -> np.ndarray:
    from vad_turn.core.audio import decode_audio_bytes

    return decode_audio_bytes(rec.audio["bytes"], source=rec.id)


def test_training_lowers_the_loss(trained):
    net, fs, before, after = trained
    assert len(fs) >= 70 and 0.2 < float(fs.label.mean()) < 0.8
    assert after < 0.7 * before, (before, after)
    p = predict_features(net, fs)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(fs.label.numpy(), p) > 0.8


def test_export_parity_size_and_errors(trained, rendered, data_root, workdir):
    tmp_path = workdir
    net = trained[0].eval()
    wins, sil = real_windows(data_root, net.cfg.features, rendered)
    assert len(wins) >= 200
    fp32 = export_onnx(net, tmp_path / "m.onnx", wins, sil)
    assert fp32["max_abs_diff"] <= 1e-4
    from vad_turn.core.onnx import cpu_isa, probe_diff, probe_path

    try:
        int8 = quantize_int8(tmp_path / "m.onnx", tmp_path / "m.int8.onnx", net, wins, sil)
    except ExportError as e:
        # This small model, trained here, has been refused on an AVX2-only AMD EPYC: its int8 LSTM was 0.023
        # off fp32, over the 0.02 tolerance (int8 kernels differ by CPU). Refusing there is the design:
        # inference then runs fp32. A CPU with exact int8 dot products (VNNI, AMX) must export it.
        if cpu_isa()["int8_dot"] in ("vnni", "amx"):
            raise
        assert "no int8 model within tol 0.02" in str(e) and "'ops': ['MatMul', 'LSTM']" in str(e)  # every op set tried
        assert not (tmp_path / "m.int8.onnx").exists() and not probe_path(tmp_path / "m.int8.onnx").exists()
        int8 = None
    if int8 is not None:
        assert int8["max_abs_diff"] <= 0.02 and int8["decision_agreement"] >= 0.99 and int8["quantized_nodes"] >= 1
        assert int8["reduce_range"] is True and int8["cpu"]["flags"] and int8["probe"]["n"] == 8 + 3
        assert probe_path(tmp_path / "m.int8.onnx").exists()
        assert probe_diff(make_session(tmp_path / "m.int8.onnx"), probe_path(tmp_path / "m.int8.onnx"))[0] <= 0.02
        assert int8["size_bytes"] < fp32["size_bytes"] <= 10 * MB
    with pytest.raises(ExportError, match="disagree"):
        export_onnx(net, tmp_path / "bad.onnx", wins[:4], sil[:4], tol=-1.0)
    assert not (tmp_path / "bad.onnx").exists()  # a failed export leaves no file
    with pytest.raises(ExportError, match="no int8 model within"):
        quantize_int8(tmp_path / "m.onnx", tmp_path / "bad.int8.onnx", net, wins[:8], sil[:8], tol=-1.0)
    assert not (tmp_path / "bad.int8.onnx").exists() and not probe_path(tmp_path / "bad.int8.onnx").exists()
    with pytest.raises(ExportError, match="at least one probe"):
        export_onnx(net, tmp_path / "bad.onnx", wins[:0], sil[:0])


def test_default_architecture_fits_10_mb_in_int8(tmp_path, data_root):
    net = AcousticNet(AcousticModelConfig()).eval()
    assert net.n_parameters() < 500_000
    clip = load_audio(data_root / "clips" / "jfk.flac")
    cfg = net.cfg.features
    wins = np.stack([window_audio(clip[:e], cfg) for e in range(16000, clip.size, 16000)])
    sil = np.linspace(0, 2, len(wins)).astype(np.float32)
    fp32 = export_onnx(net, tmp_path / "d.onnx", wins, sil)
    int8 = quantize_int8(tmp_path / "d.onnx", tmp_path / "d.int8.onnx", net, wins, sil, min_agreement=0.0)
    assert int8["size_bytes"] <= 10 * MB and fp32["size_bytes"] <= 10 * MB


def test_detector_through_the_registry(trained, rendered, workdir):
    tmp_path = workdir
    net = trained[0]
    folder = save_model(net, tmp_path / "model")
    probe = np.stack([window_audio(load_audio_bytes(r), net.cfg.features) for r in rendered])
    export_onnx(net, folder / "model.onnx", probe, np.zeros(len(probe), np.float32))
    det_onnx = make_detector("acoustic", model=str(folder))
    det_torch = make_detector("acoustic", model=str(folder), backend="torch")
    assert det_onnx.needs_audio and not det_onnx.needs_words and det_onnx.backend == "onnx"
    cfg = EvalConfig(split="val", timeouts_s=(1.0,))
    res = evaluate_detector(rendered, det_onnx, cfg)
    preds = res["predictions"]
    assert len(preds) > 50 and preds["p_eot"].between(0, 1).all()
    res_t = evaluate_detector(rendered, det_torch, cfg)
    assert np.max(np.abs(res_t["predictions"]["p_eot"].to_numpy() - preds["p_eot"].to_numpy())) <= 1e-4
    audio = load_audio_bytes(rendered[0])[:40000]
    one = det_onnx.predict(audio, (), (), 0.3)
    assert one == pytest.approx(float(det_onnx.predict_windows(window_audio(audio, net.cfg.features)[None],
                                                               np.array([0.3]))[0]), abs=1e-7)


def test_query_window_handles_8k_stereo_int16_empty_and_bad_input(data_root):
    cfg = AcousticModelConfig().features
    clip = load_audio(data_root / "clips" / "jfk.flac")[:5 * SR]
    via_8k = query_window(resample(clip, SR, 8000), cfg, sample_rate_hz=8000)
    assert np.array_equal(via_8k, window_audio(telephony_8k(clip), cfg))
    stereo = np.stack([clip, clip], axis=1)
    assert np.allclose(query_window(stereo, cfg), window_audio(clip, cfg), atol=1e-7)
    pcm = (clip * 32767).astype(np.int16)
    assert np.max(np.abs(query_window(pcm, cfg) - window_audio(clip, cfg))) < 1e-4
    assert np.array_equal(query_window(np.zeros(0, np.float32), cfg), np.zeros(cfg.n_samples, np.float32))
    bad = clip.copy()
    bad[-10] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        query_window(bad, cfg)
    with pytest.raises(AudioError, match="needs audio"):
        query_window(None, cfg)


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        make_detector("acoustic", model=str(tmp_path / "nowhere"))
    folder = save_model(AcousticNet(AcousticModelConfig(features=FeatureConfig(window_s=1.0))), tmp_path / "no-onnx")
    with pytest.raises(FileNotFoundError, match="model.onnx"):
        make_detector("acoustic", model=str(folder))


def test_shipped_model_parity_on_real_fixtures(data_root, rendered):
    import json

    net = load_model(DEFAULT_MODEL_DIR)
    card = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    threshold = float(card.get("threshold", 0.5))
    wins, sil = real_windows(data_root, net.cfg.features, rendered)
    from vad_turn.acoustic.export import torch_probabilities

    p_t = torch_probabilities(net, wins, sil)
    p_32 = run_session(make_session(DEFAULT_MODEL_DIR / "model.onnx"), wins, sil)
    p_8 = run_session(make_session(DEFAULT_MODEL_DIR / "model.int8.onnx"), wins, sil)
    assert np.max(np.abs(p_32 - p_t)) <= 1e-4
    assert np.max(np.abs(p_8 - p_t)) <= 0.02
    assert np.mean((p_8 >= threshold) == (p_t >= threshold)) >= 0.99
    assert (DEFAULT_MODEL_DIR / "model.int8.onnx").stat().st_size <= 10 * MB
    assert config_from_dict(AcousticModelConfig, card["model"]) == net.cfg  # the flat "model" section


def test_condition_table_reproduces_the_harness_run(trained, rendered, workdir):
    import json

    from vad_turn.acoustic.report import condition_rows, format_table
    from vad_turn.data.dataset import write_turns
    from vad_turn.harness.evaluate import run as evaluate_run

    folder = workdir / "model"
    if not (folder / "model.onnx").exists():
        save_model(trained[0], folder)
        probe = np.stack([window_audio(load_audio_bytes(r), trained[0].cfg.features) for r in rendered])
        export_onnx(trained[0], folder / "model.onnx", probe, np.zeros(len(probe), np.float32))
    noisy = [dataclasses.replace(r, id=r.id + "+8k", audio_condition="8k") for r in rendered[:3]]
    data = write_turns(list(rendered) + noisy, workdir / "ds")
    out = workdir / "eval"
    metrics = evaluate_run(EvalConfig(dataset=data, split="val", detector="acoustic", detector_opts=(f"model={folder}",),
                                      timeouts_s=(1.0, 2.0), out=out))
    rows = {r["condition"]: r for r in condition_rows(out)}
    assert set(rows) == {"clean", "8k", "all"} and rows["all"]["n_turns"] == len(rendered) + 3
    assert rows["clean"]["n_turns"] == len(rendered) and rows["8k"]["n_turns"] == 3
    ops = {op["name"]: op for op in metrics["operating_points"]}
    for name in ("fcr@lat<=0.6s", "lat@fcr<=10%"):
        key = "false_cutoff_rate" if name.startswith("fcr") else "mean_latency_s"
        assert rows["all"][name] == pytest.approx(ops[name][key])
        assert rows["all"][f"{name} vad"] == pytest.approx(ops[name]["vad_only"][key])
    assert json.loads((out / "config.json").read_text())["detector"] == "acoustic"
    assert "| clean |" in format_table(list(rows.values()))
    from vad_turn.acoustic.report import write_model_card

    card = write_model_card(folder, format_table(list(rows.values())), [str(out)]).read_text()
    assert '"conv_channels": 32' in card and "| clean |" in card and "vad-turn train-acoustic" in card


def test_fp32_only_export_for_a_model_that_is_not_shipped(trained, rendered, data_root, workdir, monkeypatch):
    """`export_int8=False` (a cross-fit fold's model, scored in fp32): the folder gets the checked fp32 graph and no
    int8 graph or probe, so an int8 parity check that fails cannot stop a fold."""
    from vad_turn.acoustic import train as T

    net = trained[0].eval()
    wins, sil = real_windows(data_root, net.cfg.features, rendered)
    monkeypatch.setattr(T, "probe_windows", lambda cfg, n=64: (wins[:n], sil[:n]))
    cfg = dataclasses.replace(T.AcousticTrainConfig(model=net.cfg), model_out=workdir / "fp32-only", export_int8=False)
    checks = T.save_trained(net, cfg, {})
    folder = workdir / "fp32-only"
    assert set(checks) == {"fp32"} and checks["fp32"]["max_abs_diff"] <= 1e-4
    assert (folder / "model.onnx").is_file() and not list(folder.glob("model.int8*"))
