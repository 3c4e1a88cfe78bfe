"""The shipped turn model inside the frameworks voice agents are built with.

- `vad_turn.integrations.pipecat`: a Pipecat turn analyzer (`TurnModelAnalyzer`), installed with the
  `[pipecat]` extra; importing it imports Pipecat, so nothing here is imported by `import vad_turn`.
- eot-bench (LiveKit's end-of-turn benchmark): the adapter is `vad_turn.fusion.eotbench.EotBenchModel`.
"""
