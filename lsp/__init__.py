"""The codesearch language server (pygls handlers over the engine); editor clients live beside it."""
