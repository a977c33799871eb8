"""Model files: the tiny random-weight model and quantization."""
