"""ONNX export and the onnxruntime runtime (import name i2i_export)."""
