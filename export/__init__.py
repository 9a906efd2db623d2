"""Export a trained VAE's encoder and decoder to ONNX (needs torch and onnx)."""
