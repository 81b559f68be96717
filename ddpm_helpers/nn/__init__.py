"""Neural networks used by the notebooks: time embeddings, an MLP and a U-Net."""
