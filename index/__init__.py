"""Vector store, catalog and voting: where embeddings become answers."""
