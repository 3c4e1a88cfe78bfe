"""The fused turn model: inference without torch (`runtime`: `load_turn_model`, `predict_eot`), the
harness detector (`detector`), training (`train`), cross-validated fitting (`fit`) and the eot-bench
adapter (`eotbench`)."""
