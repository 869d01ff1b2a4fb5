"""Models shipped with diffcodec, one folder each (config.json, model.safetensors, MODEL_CARD.md)."""
