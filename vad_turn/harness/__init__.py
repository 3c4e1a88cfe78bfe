"""The end-of-turn evaluation harness (torch-free): the detector protocol and registry (`detectors`),
causal queries and example tables (`examples`), metrics and calibration (`metrics`, `calibration`,
`ratio_bootstrap`), `vad-turn evaluate` (`evaluate`, `report`), the one table (`headline`) and the
text-completeness evaluation on agent-directed turns (`agent_text`, `agent_text_report`), and the
frame-level evaluation of the VAD engines on the TEN VAD test set (`vad_eval`)."""
