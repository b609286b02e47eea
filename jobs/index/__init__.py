"""FAISS search over faces: sharded builds from a pinned Delta version, published through a Delta registry."""
