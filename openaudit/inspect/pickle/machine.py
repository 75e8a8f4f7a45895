"""The symbolic stack machine: runs one pickle's opcodes without unpickling anything.

The machine follows ``pickle.py``'s ``_Unpickler`` semantics, but on descriptions (:mod:`.values`):
every global the pickle would import (GLOBAL, INST, STACK_GLOBAL resolved through the stack and the
memo) is recorded and classified by :mod:`.policy`, and so are the calls, BUILDs and persistent ids
that an unpickler would execute; calls of allowed globals are evaluated by :mod:`.constructors`.
Pickles nested in byte payloads are walked too. Bad input never raises: it becomes a finding in the
:class:`ScanContext`, and the walk's result says that it did not reach STOP.
"""

from __future__ import annotations

import codecs
import gc
import struct
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from openaudit.errors import MalformedInput, ParseTimeout
from openaudit.findings import Finding, Severity, finding
from openaudit.inspect.pickle.constructors import (
    CODECS_ENCODE,
    FROMBUFFER,
    QUANTIZED_WEIGHT_CLASS,
    RECONSTRUCT,
    RECONSTRUCTOR,
    interpret_call,
    set_array_state,
    storage_from_pid,
)
from openaudit.inspect.pickle.opcodes import (
    BIG_ENDIAN_DOUBLE,
    FIXED_INT,
    INLINE_PAYLOAD_BYTES,
    MAX_LONG_BYTES,
    MAX_TEXT_BYTES,
    OPCODES,
    PROTOCOL_MAX,
    ByteRange,
    PickleMalformed,
    PickleTruncated,
)
from openaudit.inspect.pickle.policy import GlobalPolicy, compat_names, global_policy, severity_reason
from openaudit.inspect.pickle.values import (
    Blob,
    Call,
    Dct,
    DType,
    Global,
    Instance,
    Lst,
    NdArray,
    Opaque,
    Persistent,
    SetV,
    StorageRef,
    Tup,
    Unresolved,
    Value,
    describe,
)
from openaudit.limits import Deadline
from openaudit.release import printable

# ---------------------------------------------------------------------------------------------------
# Budgets per file. A crafted pickle can describe anything; these bound what the walker keeps in memory.

# Symbolic values created per file: the memory bound. A torch.save state dict needs 35 per tensor with its
# module's _metadata entry (45 when tensors are wrapped as nn.Parameter; tests/test_pickles.py measures
# both), so 500,000 values hold about 14,000 tensors in one file; real checkpoints shard long before that
# (a 100,000-tensor MoE ships as many files, and as safetensors). Walking half a million one-byte values
# takes about a third of a second, so a handful of crafted files stays within a few seconds.
MAX_VALUES = 500_000
# Opcodes run per file: the time bound (PROTO or FRAME opcodes repeated create no value). Real pickles
# run about one opcode per value, so this never binds before MAX_VALUES does.
MAX_OPCODES = 1_000_000
# Distinct globals one pickle may import. A weights pickle needs a handful (numpy's _reconstruct/ndarray/
# dtype, torch's rebuild functions and storage classes: under 40); thousands mean a crafted file, and
# working out the safety of each one is what made such a file slow.
MAX_DISTINCT_GLOBALS = 1_000
# Payload and text bytes kept in memory per file; past this, payloads are skipped like large ones.
MAX_INLINE_TOTAL = 64 * 1024 * 1024
# Nesting of pickles inside pickles that the scanner follows.
MAX_NESTED_DEPTH = 3

# Callables that unpickle their argument: a payload passed to one is walked as a pickle.
LOADS_LIKE = frozenset(
    {"pickle.loads", "_pickle.loads", "pickle._loads", "dill.loads", "cloudpickle.loads", "numpy.loads",
     "numpy.core.numeric.loads"}
)


# ---------------------------------------------------------------------------------------------------
# The scan context: what one file's walk accumulates.


@dataclass
class ScanContext:
    """Per-file state shared by every pickle walked in it (nested ones included)."""

    path: str
    deadline: Deadline
    policy: GlobalPolicy = field(default_factory=global_policy)
    imports: dict[str, int] = field(default_factory=dict)  # module.name -> first offset
    findings: list[Finding] = field(default_factory=list)
    storages: dict[str, StorageRef] = field(default_factory=dict)
    values_left: int = field(default_factory=lambda: MAX_VALUES)
    opcodes_left: int = field(default_factory=lambda: MAX_OPCODES)
    inline_left: int = field(default_factory=lambda: MAX_INLINE_TOTAL)
    depth: int = 0
    # For a pickle read from memory (a decompressed zip member) payload offsets are not file offsets.
    file_offsets: bool = True
    where: str = ""  # e.g. " (zip member archive/data.pkl)"
    _seen: set = field(default_factory=set)

    def add(self, rule_id: str, message: str, *, key: object = None, severity: Severity | None = None) -> None:
        """Record a finding once per (id, key)."""
        dedupe = (rule_id, key if key is not None else message)
        if dedupe in self._seen:
            return
        self._seen.add(dedupe)
        self.findings.append(finding(rule_id, f"{message}{self.where}", self.path, severity=severity))

    def spend(self, count: int = 1) -> None:
        self.values_left -= count
        if self.values_left < 0:
            raise PickleTooComplex(f"builds more than {MAX_VALUES:,} values")


class PickleTooComplex(Exception):
    """The file builds more values or runs more opcodes than openaudit follows in one file."""


@dataclass
class PickleResult:
    """One walked pickle: where it lies, what it evaluates to, and whether the walk got to STOP."""

    start: int
    end: int
    root: Value | object | None
    protocol: int | None
    complete: bool


# ---------------------------------------------------------------------------------------------------
# The walker.


def walk_pickle(source: ByteRange, ctx: ScanContext) -> PickleResult:
    """Run one pickle (from ``source.pos`` to its STOP) on the symbolic machine.

    Never raises on bad input: problems become findings in ``ctx`` and ``complete`` is False.
    ``ParseTimeout`` does propagate (the caller decides how to report it).
    """
    machine = _Machine(source, ctx)
    start = source.pos
    with _collector_paused():
        try:
            root = machine.run()
            return PickleResult(start, source.pos, root, machine.protocol, True)
        except PickleTruncated:
            ctx.add("pickle-truncated", f"the pickle starting at byte {start} ends before its STOP opcode")
        except PickleMalformed as exc:
            ctx.add("pickle-malformed", f"pickle at byte {start}: {exc} (at byte {machine.op_offset})")
        except PickleTooComplex as exc:
            # Once per file: when the budget is spent, every later pickle of the file stops at once.
            ctx.add("pickle-too-complex", f"the pickle at byte {start} {exc}, more than openaudit follows in one file",
                    key=("too-complex", str(exc)))
        except RecursionError:
            ctx.add("pickle-too-complex", f"the pickle at byte {start} nests values too deeply")
        # Free what the failed walk built while the collector is still paused: reference counting frees
        # it at once, where the collector would first traverse up to MAX_VALUES objects.
        machine.release()
    return PickleResult(start, source.pos, None, machine.protocol, False)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector during a walk (re-entrant: nested walks leave it alone).

    A walk allocates up to MAX_VALUES small objects that all stay alive, and every few hundred
    allocations the collector traverses the young ones, and now and then all of them: that doubles the
    time of a long walk. Cycles made while it is paused (a list appended to itself through the memo) are
    collected once it resumes.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _Machine:
    """The symbolic stack machine of one pickle (pickle.py's ``_Unpickler`` semantics)."""

    def __init__(self, source: ByteRange, ctx: ScanContext):
        self.source = source
        self.ctx = ctx
        self.stack: list = []
        self.metastack: list[list] = []
        self.memo: dict[int, object] = {}
        self.protocol: int | None = None
        self.op_offset = source.pos

    # -- helpers ---------------------------------------------------------------------------------

    def release(self) -> None:
        """Drop the stack, the marks and the memo (after a failed walk)."""
        self.stack, self.metastack, self.memo = [], [], {}

    def pop(self) -> object:
        if not self.stack:
            raise PickleMalformed("stack underflow")
        return self.stack.pop()

    def top(self) -> object:
        if not self.stack:
            raise PickleMalformed("stack underflow")
        return self.stack[-1]

    def pop_mark(self) -> list:
        if not self.metastack:
            raise PickleMalformed("MARK expected but not found")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def push(self, value: object) -> None:
        ctx = self.ctx  # ctx.spend(), inlined: every value passes here
        ctx.values_left -= 1
        if ctx.values_left < 0:
            raise PickleTooComplex(f"builds more than {MAX_VALUES:,} values")
        self.stack.append(value)

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> object:
        # The hot loop of every scan (a crafted file can be millions of one-byte opcodes): the opcode and
        # a fixed-size argument are read straight from the source's window, dispatched through a table
        # built once; every _POLL_EVERY opcodes the deadline is polled and the opcode budget charged.
        source = self.source
        ctx = self.ctx
        deadline = ctx.deadline
        deadline.check_now()
        if ctx.opcodes_left <= 0:  # the file's budget is spent: no further pickle is walked
            raise PickleTooComplex(f"runs more than {MAX_OPCODES:,} opcodes")
        dispatch = _DISPATCH
        argument = self._argument
        countdown = _POLL_EVERY
        try:
            while True:
                countdown -= 1
                if not countdown:
                    countdown = _POLL_EVERY
                    self._charge(_POLL_EVERY)
                    deadline.check_now()
                pos = source.pos
                self.op_offset = pos
                window = source.window
                index = pos - source.window_start
                if 0 <= index < len(window):  # the window never extends past the end of the range
                    code = window[index]
                    source.pos = pos + 1
                else:
                    code = source.read(1)[0]
                    window = source.window
                    index = pos - source.window_start
                entry = dispatch[code]
                if entry is None:
                    raise PickleMalformed(f"invalid opcode 0x{code:02x}")
                name, kind, handler, fixed = entry
                if fixed is not None:
                    end = index + 1 + fixed.size
                    if end <= len(window):
                        arg = fixed.unpack_from(window, index + 1)[0]
                        source.pos = pos + 1 + fixed.size
                    else:
                        arg = source.unpack(fixed)[0]
                elif kind:
                    arg = argument(kind, name)
                else:
                    arg = None
                if handler is None:  # STOP
                    spent, countdown = _POLL_EVERY - countdown, _POLL_EVERY
                    self._charge(spent)
                    return self.pop()
                handler(self, arg)
        finally:
            ctx.opcodes_left -= _POLL_EVERY - countdown  # a walk that stopped early used them too

    def _charge(self, opcodes: int) -> None:
        ctx = self.ctx
        ctx.opcodes_left -= opcodes
        if ctx.opcodes_left < 0:
            raise PickleTooComplex(f"runs more than {MAX_OPCODES:,} opcodes")

    def _argument(self, kind: str, name: str) -> object:
        source = self.source
        fixed = FIXED_INT.get(kind)
        if fixed is not None:
            return source.unpack(fixed)[0]
        if kind == "f8":
            return source.unpack(BIG_ENDIAN_DOUBLE)[0]
        if kind in ("long1", "long4"):
            size = source.read(1)[0] if kind == "long1" else struct.unpack("<i", source.read(4))[0]
            if size < 0:
                raise PickleMalformed("LONG4 with a negative length")
            if size > MAX_LONG_BYTES:
                source.skip(size)
                return Opaque(f"a {size}-byte integer")
            return int.from_bytes(source.read(size), "little", signed=True)
        if kind in ("b1", "b4", "b8", "ba8", "bs1", "bs4", "t1", "t4", "t8"):
            return self._payload(kind, name)
        if kind.startswith("nl_"):
            return self._line_argument(kind)
        raise AssertionError(kind)

    def _payload(self, kind: str, name: str) -> Blob | str | Opaque:
        source = self.source
        if kind in ("b1", "bs1", "t1"):
            length = source.read(1)[0]
        elif kind in ("b4", "t4"):
            length = struct.unpack("<I", source.read(4))[0]
        elif kind == "bs4":
            length = struct.unpack("<i", source.read(4))[0]
            if length < 0:
                raise PickleMalformed("BINSTRING with a negative length")
        else:
            length = struct.unpack("<Q", source.read(8))[0]
        if length > source.remaining():
            raise PickleTruncated
        offset = source.pos if self.ctx.file_offsets else None
        keep = length <= self.ctx.inline_left
        if keep:
            self.ctx.inline_left -= min(length, MAX_TEXT_BYTES)
        is_text = kind.startswith("t")
        if is_text:
            if length > MAX_TEXT_BYTES or not keep:
                source.skip(length)
                return Blob(offset, length, None, "text")
            raw = source.read(length)
            try:
                return raw.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                raise PickleMalformed(f"{name} holds invalid UTF-8") from None
        if kind.startswith("bs"):
            # BINSTRING: Python 2 str; Python 3 decodes it with the load's encoding (ASCII by default).
            if length > MAX_TEXT_BYTES or not keep:
                source.skip(length)
                return Blob(offset, length, None, "text")
            raw = source.read(length)
            return raw.decode("latin-1")
        blob_kind = "bytearray" if kind == "ba8" else "bytes"
        if length <= INLINE_PAYLOAD_BYTES and keep:
            return Blob(offset, length, source.read(length), blob_kind)
        source.skip(length)
        return Blob(offset, length, None, blob_kind)

    def _line_argument(self, kind: str) -> object:
        source = self.source
        if kind == "nl_global":
            module = source.readline()[:-1]
            name = source.readline()[:-1]
            try:
                return module.decode("utf-8"), name.decode("utf-8")
            except UnicodeDecodeError:
                raise PickleMalformed("GLOBAL name is not UTF-8") from None
        line = source.readline()[:-1]
        if kind == "nl_int":
            if line == b"00":
                return False
            if line == b"01":
                return True
            return _parse_int(line)
        if kind == "nl_long":
            return _parse_int(line[:-1] if line.endswith(b"L") else line)
        if kind == "nl_float":
            try:
                return float(line)
            except ValueError:
                raise PickleMalformed("FLOAT argument is not a number") from None
        if kind == "nl_ascii":
            try:
                return line.decode("ascii")
            except UnicodeDecodeError:
                raise PickleMalformed("PERSID is not ASCII") from None
        if kind == "nl_string":
            line = line.rstrip(b"\r")
            if len(line) >= 2 and line[0] == line[-1] and line[:1] in (b"'", b'"'):
                try:
                    return codecs.escape_decode(line[1:-1])[0].decode("latin-1")
                except ValueError:
                    raise PickleMalformed("STRING has a bad escape") from None
            raise PickleMalformed("STRING argument is not quoted")
        if kind == "nl_unicode":
            return line.decode("raw-unicode-escape", "replace")
        raise AssertionError(kind)

    # -- stack and memo opcodes -------------------------------------------------------------------

    def op_PROTO(self, arg: int) -> None:
        if not 0 <= arg <= PROTOCOL_MAX:
            raise PickleMalformed(f"unsupported pickle protocol {arg}")
        self.protocol = arg

    def op_FRAME(self, arg: int) -> None:
        # Frames are a read-ahead hint; the opcodes inside are walked like any others.
        if arg > self.source.remaining():
            raise PickleTruncated

    def op_MARK(self, _arg: None) -> None:
        self.ctx.spend()  # a new list: a stream of MARKs is a memory bomb too
        self.metastack.append(self.stack)
        self.stack = []

    def op_POP(self, _arg: None) -> None:
        if self.stack:
            self.stack.pop()
        else:
            self.pop_mark()

    def op_POP_MARK(self, _arg: None) -> None:
        self.pop_mark()

    def op_DUP(self, _arg: None) -> None:
        self.push(self.top())

    def _memo_get(self, index: object) -> None:
        if not isinstance(index, int) or index not in self.memo:
            raise PickleMalformed(f"memo key {index!r} was never stored")
        self.push(self.memo[index])

    op_GET = op_BINGET = op_LONG_BINGET = _memo_get

    def _memo_put(self, index: object) -> None:
        if not isinstance(index, int) or index < 0:
            raise PickleMalformed("negative PUT argument")
        self.ctx.spend()
        self.memo[index] = self.top()

    op_PUT = op_BINPUT = op_LONG_BINPUT = _memo_put

    def op_MEMOIZE(self, _arg: None) -> None:
        self.ctx.spend()
        self.memo[len(self.memo)] = self.top()

    # -- constants --------------------------------------------------------------------------------

    _push_arg = push  # the argument is the value (one call fewer per constant)

    op_INT = op_BININT = op_BININT1 = op_BININT2 = op_LONG = op_LONG1 = op_LONG4 = _push_arg
    op_FLOAT = op_BINFLOAT = _push_arg
    op_STRING = op_BINSTRING = op_SHORT_BINSTRING = op_UNICODE = op_BINUNICODE = _push_arg
    op_SHORT_BINUNICODE = op_BINUNICODE8 = _push_arg
    op_BINBYTES = op_SHORT_BINBYTES = op_BINBYTES8 = op_BYTEARRAY8 = _push_arg

    def op_NONE(self, _arg: None) -> None:
        self.push(None)

    def op_NEWTRUE(self, _arg: None) -> None:
        self.push(True)

    def op_NEWFALSE(self, _arg: None) -> None:
        self.push(False)

    def op_NEXT_BUFFER(self, _arg: None) -> None:
        self.ctx.add(
            "pickle-out-of-band-buffer",
            f"the pickle takes a protocol-5 buffer from its loader at byte {self.op_offset}",
            key="buffer",
        )
        self.push(Opaque("out-of-band buffer"))

    def op_READONLY_BUFFER(self, _arg: None) -> None:
        self.top()

    # -- containers -------------------------------------------------------------------------------

    def op_EMPTY_TUPLE(self, _arg: None) -> None:
        self.push(Tup(()))

    def op_TUPLE(self, _arg: None) -> None:
        items = self.pop_mark()
        self.push(Tup(tuple(items)))

    def _tuple_n(self, count: int) -> None:
        if len(self.stack) < count:
            raise PickleMalformed("stack underflow")
        items = tuple(self.stack[-count:])
        del self.stack[-count:]
        self.push(Tup(items))

    def op_TUPLE1(self, _arg: None) -> None:
        self._tuple_n(1)

    def op_TUPLE2(self, _arg: None) -> None:
        self._tuple_n(2)

    def op_TUPLE3(self, _arg: None) -> None:
        self._tuple_n(3)

    def op_EMPTY_LIST(self, _arg: None) -> None:
        self.push(Lst([]))

    def op_LIST(self, _arg: None) -> None:
        self.push(Lst(self.pop_mark()))

    def op_APPEND(self, _arg: None) -> None:
        value = self.pop()
        self._extend(self.top(), [value])

    def op_APPENDS(self, _arg: None) -> None:
        items = self.pop_mark()
        self._extend(self.top(), items)

    def _extend(self, target: object, items: list) -> None:
        if isinstance(target, (Lst, Call)):
            target.items.extend(items)
        elif isinstance(target, (SetV,)):
            target.items.extend(items)
        else:
            # list.append on anything else calls that object's append method.
            self._unexpected_target("APPEND", target)

    def op_EMPTY_DICT(self, _arg: None) -> None:
        self.push(Dct([]))

    def op_DICT(self, _arg: None) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise PickleMalformed("odd number of items for DICT")
        self.push(Dct(list(zip(items[0::2], items[1::2]))))

    def op_SETITEM(self, _arg: None) -> None:
        value = self.pop()
        key = self.pop()
        self._set_items(self.top(), [(key, value)])

    def op_SETITEMS(self, _arg: None) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise PickleMalformed("odd number of items for SETITEMS")
        self._set_items(self.top(), list(zip(items[0::2], items[1::2])))

    def _set_items(self, target: object, pairs: list) -> None:
        if isinstance(target, Dct):
            target.pairs.extend(pairs)
        elif isinstance(target, Call):
            target.pairs.extend(pairs)
        else:
            self._unexpected_target("SETITEM", target)

    def op_EMPTY_SET(self, _arg: None) -> None:
        self.push(SetV([]))

    def op_ADDITEMS(self, _arg: None) -> None:
        items = self.pop_mark()
        target = self.top()
        if isinstance(target, SetV):
            target.items.extend(items)
        else:
            self._unexpected_target("ADDITEMS", target)

    def op_FROZENSET(self, _arg: None) -> None:
        self.push(SetV(self.pop_mark()))

    def _unexpected_target(self, opcode: str, target: object) -> None:
        # The real unpickler may fail here, or may not (SETITEM on a list, append on an object of an
        # imported class). The walk goes on either way, so a payload placed after such a step is
        # still seen; a global being modified is reported.
        if isinstance(target, Global):
            self.ctx.add(
                "pickle-build-on-global",
                f"{opcode} at byte {self.op_offset} modifies the imported global {printable(target.full)}",
                key=("build", target.full),
            )

    # -- globals ----------------------------------------------------------------------------------

    def op_GLOBAL(self, arg: tuple[str, str]) -> None:
        module, name = arg
        self.push(self._import(module, name))

    def op_STACK_GLOBAL(self, _arg: None) -> None:
        name = self.pop()
        module = self.pop()
        if not isinstance(module, str) or not isinstance(name, str):
            described = f"{describe(module)}, {describe(name)}"
            self.ctx.add(
                "pickle-dynamic-global",
                f"STACK_GLOBAL at byte {self.op_offset} imports a global named by values that are not "
                f"plain strings ({described})",
                key=("dynamic", self.op_offset),
            )
            self.ctx.imports.setdefault("<dynamic>", self.op_offset)
            self.push(Unresolved("a dynamically named global"))
            return
        self.push(self._import(module, name))

    def op_INST(self, arg: tuple[str, str]) -> None:
        module, name = arg
        cls = self._import(module, name)
        args = self.pop_mark()
        self.push(self._call(cls, Tup(tuple(args)), "INST"))

    def op_EXT1(self, arg: int) -> None:
        self._extension(arg)

    op_EXT2 = op_EXT4 = op_EXT1

    def _extension(self, code: int) -> None:
        self.ctx.add(
            "pickle-extension-code",
            f"EXT opcode at byte {self.op_offset} imports the global registered as extension code {code}",
            key=("ext", code),
        )
        self.ctx.imports.setdefault(f"<extension {code}>", self.op_offset)
        self.push(Unresolved(f"extension code {code}"))

    def _import(self, module: str, name: str) -> Global:
        glob = Global(module, name, self.op_offset)
        full = printable(glob.full)  # names come from the file: no terminal escapes in reports
        if full not in self.ctx.imports and len(self.ctx.imports) >= MAX_DISTINCT_GLOBALS:
            raise PickleTooComplex(f"imports more than {MAX_DISTINCT_GLOBALS:,} distinct globals")
        self.ctx.imports.setdefault(full, self.op_offset)
        severity = self.ctx.policy.severity(module, name)
        if severity is not None:
            mapped = compat_names(module, name)
            also = f" (the unpickler maps it to {mapped[1]})" if len(mapped) > 1 else ""
            self.ctx.add(
                "unsafe-code",
                f"imports {full}{also} at byte {self.op_offset}: {severity_reason(severity)}",
                key=("import", full),
                severity=severity,
            )
        return glob

    # -- calls ------------------------------------------------------------------------------------

    def op_REDUCE(self, _arg: None) -> None:
        args = self.pop()
        func = self.pop()
        self.push(self._call(func, args, "REDUCE"))

    def op_NEWOBJ(self, _arg: None) -> None:
        args = self.pop()
        cls = self.pop()
        self.push(self._new(cls, args, "NEWOBJ"))

    def op_NEWOBJ_EX(self, _arg: None) -> None:
        self.pop()  # kwargs
        args = self.pop()
        cls = self.pop()
        self.push(self._new(cls, args, "NEWOBJ_EX"))

    def op_OBJ(self, _arg: None) -> None:
        items = self.pop_mark()
        if not items:
            raise PickleMalformed("OBJ without a class")
        self.push(self._call(items[0], Tup(tuple(items[1:])), "OBJ"))

    def _new(self, cls: object, args: object, opcode: str) -> object:
        if isinstance(cls, Global) and cls.name.rsplit(".", 1)[-1] == QUANTIZED_WEIGHT_CLASS:
            self._flag_call(cls, opcode)
            return Instance(cls)
        return self._call(cls, args, opcode)

    def _call(self, func: object, args: object, opcode: str) -> object:
        self._scan_nested_pickles(func, args)
        if not isinstance(func, Global):
            self.ctx.add(
                "pickle-uncalled-reduce",
                f"{opcode} at byte {self.op_offset} calls {describe(func)}, which is not an imported global",
                key="computed-callable",  # once per file: every such call site is as bad as the first
            )
            return Unresolved(f"a call of {describe(func)}")
        self._flag_call(func, opcode)
        full = func.full
        arguments = args.items if isinstance(args, Tup) else None
        if arguments is None:
            return Unresolved(f"{full}(…)")
        if not self.ctx.policy.is_allowed(func.module, func.name):
            return Call(func, args)
        if full == RECONSTRUCTOR and arguments and isinstance(arguments[0], Global):
            # copyreg._reconstructor(cls, base, state) creates a cls instance: protocol 0/1 objects.
            return self._new(arguments[0], Tup(()), "copyreg._reconstructor")
        return interpret_call(full, arguments, self.ctx.policy) or Call(func, args)

    def _flag_call(self, func: Global, opcode: str) -> None:
        severity = self.ctx.policy.severity(func.module, func.name)
        if severity is not None:
            self.ctx.add(
                "pickle-unsafe-call",
                f"{opcode} at byte {self.op_offset} calls {printable(func.full)}: {severity_reason(severity)}",
                key=("call", func.full),
                severity=severity,
            )

    def _scan_nested_pickles(self, func: object, args: object) -> None:
        if not isinstance(args, Tup):
            return
        name = func.full if isinstance(func, Global) else ""
        for item in args.items:
            if isinstance(item, Blob) and item.kind != "text" and _looks_like_nested(item, name):
                self._walk_nested(item, name or describe(func))

    def _walk_nested(self, blob: Blob, callee: str) -> None:
        ctx = self.ctx
        self.ctx.add(
            "pickle-nested",
            f"a {blob.length}-byte pickle at byte {blob.offset if blob.offset is not None else '?'} "
            f"is passed to {callee}",
            key=("nested", blob.offset, blob.length),
        )
        if ctx.depth >= MAX_NESTED_DEPTH:
            return
        if blob.data is not None:
            inner = ByteRange.of_bytes(blob.data)
        elif blob.offset is not None and ctx.file_offsets:
            inner = ByteRange(self.source.handle, blob.offset, blob.offset + blob.length)
        else:
            return
        saved_where = ctx.where
        ctx.depth += 1
        ctx.where = f"{saved_where} (in a pickle nested at byte {blob.offset})"
        try:
            # Offsets inside in-memory copies are not file offsets.
            saved_offsets = ctx.file_offsets
            ctx.file_offsets = saved_offsets and blob.data is None
            walk_pickle(inner, ctx)
        finally:
            ctx.file_offsets = saved_offsets
            ctx.depth -= 1
            ctx.where = saved_where

    def op_BUILD(self, _arg: None) -> None:
        state = self.pop()
        target = self.top()
        if isinstance(target, NdArray):
            set_array_state(target, state)
        elif isinstance(target, DType):
            if isinstance(state, Tup) and len(state.items) >= 2 and isinstance(state.items[1], str):
                target.byteorder = state.items[1]
        elif isinstance(target, (Instance, Dct)):
            target.state = state
        elif isinstance(target, Call):
            target.state = state
            func = target.func
            if isinstance(func, Global) and not self.ctx.policy.is_allowed(func.module, func.name):
                self._flag_call(func, "BUILD (__setstate__)")
        elif isinstance(target, Global):
            self.ctx.add(
                "pickle-build-on-global",
                f"BUILD at byte {self.op_offset} sets attributes of the imported global {printable(target.full)}",
                key=("build", target.full),
            )
        # BUILD on anything else (a str, a tuple, an unresolved value) is not followed further; the
        # walk continues so that nothing after it goes unseen.

    # -- persistent ids ---------------------------------------------------------------------------

    def op_PERSID(self, arg: str) -> None:
        self.push(self._persistent(arg))

    def op_BINPERSID(self, _arg: None) -> None:
        self.push(self._persistent(self.pop()))

    def _persistent(self, pid: object) -> Persistent:
        storage = storage_from_pid(pid)
        if storage is None:
            self.ctx.add(
                "pickle-unsafe-persistent-id",
                f"persistent id {describe(pid)} at byte {self.op_offset} is not a PyTorch storage",
                key=("pid", self.op_offset),
            )
            return Persistent(pid, None)
        known = self.ctx.storages.setdefault(storage.key, storage)
        return Persistent(pid, known)


# The deadline is polled once per this many opcodes (and whenever a walk starts).
_POLL_EVERY = 1024


def _dispatch_entry(code: int) -> tuple[str, str, Callable | None, struct.Struct | None] | None:
    """(name, argument kind, handler or None for STOP, struct of a fixed-size integer argument or None)."""
    if code not in OPCODES:
        return None
    name, kind = OPCODES[code]
    handler = None if name == "STOP" else getattr(_Machine, "op_" + name)
    return name, kind, handler, FIXED_INT.get(kind)


_DISPATCH = tuple(_dispatch_entry(code) for code in range(256))


def _parse_int(line: bytes) -> int:
    if len(line) > 4000:
        raise PickleMalformed("integer literal too long")
    try:
        return int(line)
    except ValueError:
        raise PickleMalformed("integer argument is not a number") from None


def _looks_like_nested(blob: Blob, callee: str) -> bool:
    if callee in LOADS_LIKE:
        return True
    head = blob.data[:2] if blob.data is not None else None
    # Only payloads handed to something other than an array constructor are considered: array data
    # can start with any byte.
    return head is not None and len(head) == 2 and head[0] == 0x80 and head[1] <= PROTOCOL_MAX and callee not in (
        RECONSTRUCT | FROMBUFFER | {CODECS_ENCODE}
    )


# ---------------------------------------------------------------------------------------------------
# A trial walk, for sniffing.


def trial_walk(head: bytes) -> bool:
    """Whether ``head`` walks to STOP, or is used up without an error after at least four opcodes.

    Run opcode by opcode under an empty policy, its findings thrown away: it only tells a pickle from other bytes.
    """
    ctx = ScanContext(path="<sniff>", deadline=Deadline(0.5), policy=_EMPTY_POLICY)
    source = ByteRange.of_bytes(head)
    machine = _Machine(source, ctx)
    opcodes = 0
    try:
        while True:
            code = source.read(1)[0]
            spec = OPCODES.get(code)
            if spec is None:
                return False
            name, kind = spec
            arg = machine._argument(kind, name) if kind else None
            opcodes += 1
            if name == "STOP":
                machine.pop()
                return True
            getattr(machine, "op_" + name)(arg)
    except PickleTruncated:
        return opcodes >= 4
    except (PickleMalformed, PickleTooComplex, ParseTimeout, MalformedInput, RecursionError, ValueError, KeyError):
        return False


_EMPTY_POLICY = GlobalPolicy(allow=frozenset(), critical=(), high=())
