"""Training data: sources of labelled faces, their preparation, and the input pipeline."""
