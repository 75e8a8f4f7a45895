"""Where pickles start: telling a pickle from other bytes, and walking the pickles that follow one another.

A file (or a zip member, or the data of an ``.npy``) may hold several pickles one after another; after
each STOP the next bytes are sniffed, and walked when they start a pickle, else reported as trailing data.
"""

from __future__ import annotations

from openaudit.inspect.pickle.machine import PickleResult, ScanContext, trial_walk, walk_pickle
from openaudit.inspect.pickle.opcodes import OPCODES, PROTO0_FIRST, PROTOCOL_MAX, READ_CHUNK, ByteRange

# A file holding more concatenated pickles than this is treated as hostile.
MAX_PICKLES_PER_FILE = 64


def sniff_pickle(head: bytes) -> bool:
    """Whether ``head`` (the first bytes of a file) starts a pickle.

    Protocol 2+ pickles start with PROTO; protocol 0/1 pickles start with an ordinary opcode, so for
    them a short trial walk over ``head`` must reach STOP, or consume all of ``head`` without an
    error after at least four opcodes (a larger pickle cut off by the head).
    """
    if len(head) >= 2 and head[0] == 0x80:
        return head[1] <= PROTOCOL_MAX and (len(head) < 3 or head[2] in OPCODES)
    if not head or head[0] not in PROTO0_FIRST:
        return False
    return trial_walk(head[:READ_CHUNK * 8])


def walk_remaining_pickles(source: ByteRange, ctx: ScanContext) -> tuple[list[PickleResult], bool]:
    """Walk the pickles that follow a STOP; bytes that do not start a pickle are trailing data."""
    results: list[PickleResult] = []
    while source.remaining() > 0:
        if len(results) + 1 >= MAX_PICKLES_PER_FILE:
            ctx.add("pickle-too-complex", f"the file holds more than {MAX_PICKLES_PER_FILE} pickles")
            return results, False
        if not sniff_pickle(source.peek(READ_CHUNK)):
            ctx.add(
                "pickle-trailing-data",
                f"{source.remaining()} bytes follow the pickle's STOP opcode at byte {source.pos - 1}",
            )
            return results, True
        result = walk_pickle(source, ctx)
        if not result.complete:
            return results, False
        results.append(result)
    return results, True

