"""Open peer models run as harness detectors, for comparison on the same spans (`smart_turn`)."""
