"""Static pickle inspection: walk the opcodes, never unpickle.

A pickle is a program for a stack machine. This package runs that program *symbolically*: every value
is a description (a string, a tuple of descriptions, "the result of calling numpy.dtype with …"),
nothing is imported or constructed, and no data payload is read — large BINBYTES/BINUNICODE8/…
payloads are skipped with a seek and remembered as (offset, length). From the descriptions it
recovers two things:

- safety: every global the file would import (GLOBAL, INST, STACK_GLOBAL resolved through the stack
  and the memo), classified by ``checks/pickle_globals.yaml``, plus the calls, BUILDs and persistent
  ids that an unpickler would execute;
- tensors: numpy arrays (``_reconstruct`` + ``__setstate__``), Grok-1's ``QuantizedWeight8bit``
  objects and PyTorch ``_rebuild_tensor_v2/v3`` calls, as :class:`TensorRecord` with dtype, shape and
  the absolute file offset of their data.

The modules, from the entry points down (each imports only those below it):

- ``scan``: ``scan_pickle_file``, for a file of any name: raw pickles, or a PyTorch file;
- ``torch_files``: PyTorch zip and legacy containers; ``npy``: ``.npy`` files and ``.npz`` members;
- ``sniff``: whether bytes start a pickle, and the pickles that follow one another;
- ``tensor_records``: tensor records from the values a walk evaluates to;
- ``machine``: the symbolic stack machine, the per-file budgets and the scan context;
- ``constructors``: what calls of allowed globals (numpy, torch, OrderedDict) build;
- ``policy``: the allow-list and severities of globals; ``values``: the symbolic values;
- ``opcodes``: the opcode table and a bounded reader of a byte range.

Grok-1 checkpoints (a folder of one pickle per leaf) are named by ``grok_checkpoint`` after the leaf
order in ``grok_layout``.
"""
