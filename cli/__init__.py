"""digitvae.cli: the `digitvae` command line, above the runtime, training and export."""
