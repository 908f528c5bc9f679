"""Audio → features → embeddings: the encoder side of tuneprint."""
