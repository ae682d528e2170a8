"""M-BEIR download: Hub and mirror sources, verified parts, safe streamed extraction, disk checks, released checkpoints."""
