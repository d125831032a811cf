"""The workflow's stages, one module each; `make(config)` returns its runner.Stage."""
