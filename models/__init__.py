"""The default model shipped with codesearch: one folder per model, installed as `codesearch.models`."""
