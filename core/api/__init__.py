"""The client-facing APIs as specs for the pipeline (chat, messages, embeddings), their validation,
stream encoders, the caller identity from the hop credential, and the listener split."""
