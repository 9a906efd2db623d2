"""Model folders: find one, read its model.json strictly, check its ONNX files, write figures into it."""
