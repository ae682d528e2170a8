"""Training: the one Accelerate loop, Recall on the val split during training, the metrics logs."""
