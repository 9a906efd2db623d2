"""The ready-to-use models shipped with digitvae, one folder each (model.json + ONNX files)."""
