"""Measuring the pipeline: the end-to-end latency bench (`e2e`, `pipeline bench`) on scripted and real-caller
scenarios (`scenarios`, `getgoing_scenarios`) with its report, figures and paired statistics (`report`, `plots`,
`stats`), the per-turn timeline (`timeline`), the LLM-side latency bench (`llm`) and the STT measurements
(`stt_eval`: word error rate, `stt_lag`: word lag on real callers, `stt_lm`: PocketSphinx's domain LM).

It builds on `pipeline.runtime` and never imports `pipeline.serving`.
"""
