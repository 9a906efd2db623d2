"""Train the digit VAE with PyTorch: presets, data, model, loop and checkpoints.

Submodules that need torch (model, loop, checkpoint) import it; `config`, `data` and
`download` do not, so the CLI can use them without torch installed.
"""
