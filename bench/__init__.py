"""digitvae.bench: what `digitvae bench` measures: latency, throughput, hardware bounds and cold start of a model."""
