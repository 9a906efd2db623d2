"""Inference: load a model's ONNX halves into onnxruntime sessions and run them, checked, on any provider."""
