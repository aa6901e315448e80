"""Edit memory: embedders, FAISS index (CPU/GPU/sharded), durable edit store."""
