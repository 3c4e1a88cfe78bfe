"""Frame-level voice activity detectors (`engines`: Silero, WebRTC, TEN, energy) and their evaluation
on the hand-labelled VAD test set (`evaluate`)."""
