"""The learnable synthetic M-BEIR of the demo and the tests: scenes, records, the file tree."""
