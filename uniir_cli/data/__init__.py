"""M-BEIR data: constants, records, readers, instructions and the synthetic generator."""
