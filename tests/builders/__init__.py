"""Writers for tiny model files used by the tests (safetensors, GGUF, pickles, Grok checkpoints).

Large files are written with their data regions as sparse holes (``truncate`` past the end), so a file
with Grok-1's real shapes costs almost no disk.
"""
