"""Export: checkpoint -> ONNX (with its metadata) -> TensorRT engine."""
