"""digitvae.serve: the models over the Open Inference Protocol (KServe v2) on MLServer; needs the [serve] extra."""
