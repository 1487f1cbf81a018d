"""The trainer: tokenizer, decoder LM, contrastive fine-tuning into an embedding model, ONNX export."""
