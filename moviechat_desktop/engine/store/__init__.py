"""What is kept on disk per film: memory cache, chat history, fingerprints, atomic writes."""
