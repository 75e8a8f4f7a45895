"""Malicious pickle payloads: what each imports, and the finding ids openaudit must give it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from tests.builders import pickle_builder as pb
from tests.hostile.registry import Workspace, add_case

@dataclass(frozen=True)
class Payload:
    slug: str
    make: Callable[[Path], bytes]  # canary path -> pickle bytes
    globals: tuple[str, ...]
    ids: tuple[str, ...]
    canary: bool = False


def _p(slug: str, make: Callable[[], bytes], globals_: Sequence[str], *ids: str) -> Payload:
    return Payload(slug, lambda _canary: make(), tuple(globals_), ids or ("unsafe-code", "pickle-unsafe-call"))


UNSAFE = ("unsafe-code", "pickle-unsafe-call")
# The payload calls an unsafe global, and then calls what that call returned (a computed callable).
COMPUTED_CALL = ("unsafe-code", "pickle-unsafe-call", "pickle-uncalled-reduce")

PAYLOADS: tuple[Payload, ...] = (
    _p("os-system-GLOBAL", lambda: pb.global_call_p0("os", "system", "true"), ["os.system"]),
    _p("os-system-STACK_GLOBAL", lambda: pb.stack_global_call("os", "system", "true"), ["os.system"]),
    _p("os-system-INST", lambda: pb.inst_call("os", "system", "true"), ["os.system"]),
    _p("os-system-OBJ", lambda: pb.obj_call("os", "system", "true"), ["os.system"]),
    _p("os-system-memo", lambda: pb.memo_stack_global("os", "system", "true"), ["os.system"]),
    _p("os-system-proto5", lambda: pb.proto5_bytearray_pickle("os", "system", "true"), ["os.system"]),
    _p("os-popen", lambda: pb.stack_global_call("os", "popen", "true"), ["os.popen"]),
    _p("posix-system", lambda: pb.global_call_p0("posix", "system", "true"), ["posix.system"]),
    _p("posix-system-STACK_GLOBAL", lambda: pb.stack_global_call("posix", "system", "true"), ["posix.system"]),
    _p("nt-system", lambda: pb.stack_global_call("nt", "system", "true"), ["nt.system"]),
    _p("builtins-exec", lambda: pb.stack_global_call("builtins", "exec", "import os"), ["builtins.exec"]),
    _p("builtins-eval", lambda: pb.global_call_p0("builtins", "eval", "1+1"), ["builtins.eval"]),
    _p("builtin-eval-py2-name", lambda: pb.global_call_p0("__builtin__", "eval", "1"),
       ["__builtin__.eval", "builtins.eval"]),
    _p("builtins-getattr-chain", lambda: pb.getattr_chain("os", "system", "true"),
       ["builtins.getattr", "builtins.__import__"], *COMPUTED_CALL),
    _p("builtins-import", lambda: pb.stack_global_call("builtins", "__import__", "os"), ["builtins.__import__"]),
    _p("builtins-compile", lambda: pb.stack_global_call("builtins", "compile", "1", "<s>", "eval"),
       ["builtins.compile"]),
    _p("subprocess-Popen", lambda: pb.stack_global_call("subprocess", "Popen", "true"), ["subprocess.Popen"]),
    _p("subprocess-check_output", lambda: pb.global_call_p0("subprocess", "check_output", "true"),
       ["subprocess.check_output"]),
    _p("subprocess-run-INST", lambda: pb.inst_call("subprocess", "run", "true"), ["subprocess.run"]),
    _p("runpy-run_path", lambda: pb.stack_global_call("runpy", "run_path", "/nonexistent.py"), ["runpy.run_path"]),
    _p("runpy-run_module", lambda: pb.global_call_p0("runpy", "run_module", "this"), ["runpy.run_module"]),
    _p("runpy-_run_code", lambda: pb.stack_global_call("runpy", "_run_code", "print(1)"), ["runpy._run_code"]),
    _p("pkgutil-resolve_name", lambda: pb.resolve_name_call("os:system", "true"), ["pkgutil.resolve_name"],
       *COMPUTED_CALL),
    _p("operator-attrgetter", lambda: pb.attrgetter_call("os", "system", "true"),
       ["operator.attrgetter", "importlib.import_module"], *COMPUTED_CALL),
    _p("_operator-attrgetter", lambda: pb.stack_global_call("_operator", "attrgetter", "system"),
       ["_operator.attrgetter"]),
    _p("importlib-import_module", lambda: pb.stack_global_call("importlib", "import_module", "os"),
       ["importlib.import_module"]),
    _p("numpy-builtins-eval", lambda: pb.numpy_builtins_eval("1"), ["_operator.getitem", "numpy.__builtins__"],
       *COMPUTED_CALL),
    _p("numpy-attribute-chain", lambda: pb.attribute_chain_global("numpy", "testing.os.system", "true"),
       ["numpy.testing.os.system"]),
    _p("nested-pickle", lambda: pb.nested_pickle(pb.stack_global_call("os", "system", "true")),
       ["pickle.loads", "os.system"], "pickle-nested", *UNSAFE),
    _p("dynamic-STACK_GLOBAL", pb.dynamic_stack_global, ["builtins.str"], "pickle-dynamic-global",
       *COMPUTED_CALL),
    _p("build-on-global", lambda: pb.build_on_global("os", "path", "sep", "x"), ["os.path"],
       "pickle-build-on-global", "unsafe-code"),
    _p("extension-code", pb.extension_code_pickle, [], "pickle-extension-code", "pickle-uncalled-reduce"),
    _p("shutil-rmtree", lambda: pb.stack_global_call("shutil", "rmtree", "/nonexistent"), ["shutil.rmtree"]),
    _p("ctypes-CDLL", lambda: pb.stack_global_call("ctypes", "CDLL", "libc.so.6"), ["ctypes.CDLL"]),
    _p("pty-spawn", lambda: pb.stack_global_call("pty", "spawn", "/bin/sh"), ["pty.spawn"]),
    _p("torch-load", lambda: pb.stack_global_call("torch", "load", "other.pt"), ["torch.load"]),
    _p("webbrowser-open", lambda: pb.stack_global_call("webbrowser", "open", "http://example.invalid"),
       ["webbrowser.open"]),
    Payload("file-creating-open", lambda canary: pb.file_creating_pickle(str(canary)), ("builtins.open",),
            UNSAFE, canary=True),
)
# The payloads the issue names, also tried in every other container.
CORE_PAYLOADS = ("os-system-GLOBAL", "posix-system", "builtins-exec", "builtins-getattr-chain", "subprocess-Popen",
                 "runpy-run_path", "pkgutil-resolve_name", "operator-attrgetter", "file-creating-open")


def payload_case(category: str, slug: str, payload: Payload, build: Callable[[Workspace, bytes], Path],
                 *extra_ids: str) -> None:

    def run(ws: Workspace) -> Path:
        return build(ws, payload.make(ws.canary))

    add_case(category, slug, run, *payload.ids, *extra_ids, unsafe=payload.globals, canary=payload.canary)
