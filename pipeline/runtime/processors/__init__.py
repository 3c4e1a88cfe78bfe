"""Thin async processors around plain synchronous models (STYLE rule 6).

Data flow: VADProcessor -> STTProcessor -> TurnProcessor -> LLMProcessor -> ClauseAggregator ->
TTSProcessor -> OutputProcessor. `base.Pipeline` links them with queues and broadcasts system
frames directly to all of them.
"""
from .base import Conversation, Pipeline, Processor

__all__ = ["Conversation", "Pipeline", "Processor"]
