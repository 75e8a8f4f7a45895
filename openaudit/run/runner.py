"""``openaudit audit SOURCE --run``: load the release with JAX on every device, run it, check the outputs.

``run_release(release, weights, architecture, options)`` is the whole step; importing this module does
not import jax (``RunOptions``, ``RunResult`` and ``parse_bytes`` serve the CLI without it).

What it does, in order: refuses early what cannot run (unknown family, a config it could not read, weights
that do not match the architecture); joins ``jax.distributed`` when a coordinator is given; plans which
stored tensor feeds which forward-pass name (``loader.plan_load``); tokenizes the probe text with the
release's own tokenizer (``tokenize``); builds a one-axis mesh over every device (``sharding``); runs
the forward pass with every weight resident, or layer by layer when the weights exceed
``--memory-budget`` (``stream``); and applies the probes (``probes``).

The verdict: ``status`` is "pass" when the outputs are finite, two runs of the same tokens are
bit-identical, and the model's quality was shown: perplexity on the probe text far below uniform
(decoders), the masked-token check (encoders), or, where the release has no usable tokenizer, a
``--reference`` matched within tolerance; any ``--reference`` given must match. Every other outcome is
"fail", with the reasons (thresholds in ``probes``).

Errors, by design:
- anything about the *release* (unknown family, architecture mismatch, an unsupported dtype, an
  unreadable tensor, a missing or broken tokenizer, non-finite logits, a forward pass that fails on
  these weights, running out of device memory) gives ``status == "fail"`` with one line per reason
  in ``failures`` and a finding per reason in ``findings`` (ids in ``checks/findings/run.yaml``);
  ``run_release`` does not raise for them;
- bad *arguments* (an unreadable ``--reference`` or probe text, an unknown ``--dtype``) raise
  ``UsageError`` (exit 2);
- an *environment* that cannot run at all (jax not installed, ``jax.distributed`` unable to start or
  inconsistent multi-process arguments) raises ``AuditIncomplete`` (exit 3).
"""

from __future__ import annotations

import math
import re
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from openaudit.errors import AuditIncomplete, MalformedInput, UsageError
from openaudit.findings import Finding, finding

DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_MAX_PROBE_TOKENS = 256
SYNTHETIC_TOKENS = 32  # ids run when there is neither a tokenizer nor a reference (finite/deterministic only)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def parse_bytes(text: str) -> int:
    """A byte count from ``2GiB``, ``512MiB``, ``1.5GB``, ``4096`` (``k/m/g/t`` and ``KB``… are powers
    of 1000, ``KiB``… of 1024). Raises ValueError for anything else or a count below 1."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text or "")
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"not a byte count: {text!r} (examples: 2GiB, 512MiB, 1.5GB, 4096)")
    value = int(float(match.group(1)) * _UNITS[unit])
    if value < 1:
        raise ValueError(f"a memory budget must be at least one byte, not {text!r}")
    return value


@dataclass(frozen=True)
class RunOptions:
    dtype: str = "float32"  # compute dtype: float32 | bfloat16 | float16
    memory_budget: int | None = None  # bytes; weights larger than this are streamed layer by layer
    reference: str | None = None  # .npz with input_ids (1, T) and logits (1, T, V)
    probe_text: str | None = None  # default: openaudit/run/probe_text.txt
    max_probe_tokens: int = DEFAULT_MAX_PROBE_TOKENS
    coordinator: str | None = None  # HOST:PORT of jax.distributed's coordinator (process 0)
    num_processes: int | None = None
    process_id: int | None = None
    seed: int = 0  # masked positions (encoders) and synthetic ids
    prefetch: bool = True  # load the next layer while the current one runs (streamed mode)


@dataclass(frozen=True)
class LoadedSummary:
    """What was loaded and how."""

    tensors: int
    sharded_tensors: int  # split across the mesh along their natural axis; the others are replicated
    bytes: int  # logical bytes of every loaded array, in its device dtype
    dtype: str
    mode: str  # "in-memory" | "streamed"
    formats: tuple[str, ...]
    methods: Mapping[str, str]  # format -> how its bytes reached the devices
    memory_budget: int | None
    largest_layer_bytes: int
    peak_resident_weight_bytes: int  # most weight bytes alive at once (streamed: about two layers)
    unused_tensors: int  # stored tensors the forward pass does not read (buffers, tied copies)
    load_seconds: float
    wait_seconds: float  # time the forward pass waited on loading (prefetch hides the rest)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunResult:
    status: str  # "pass" | "fail"
    failures: tuple[str, ...] = ()
    family: str | None = None
    devices: int = 0
    device_kind: str | None = None
    platform: str | None = None
    mesh: Mapping[str, int] | None = None  # axis name -> size
    processes: int = 1
    process_index: int = 0
    logits_finite: bool | None = None
    deterministic: bool | None = None
    perplexity: float | None = None
    uniform_perplexity: int | None = None  # the vocabulary size
    perplexity_threshold: float | None = None
    tokens: int = 0
    tokenizer: str | None = None
    reference_max_abs_diff: float | None = None
    reference_tolerance: float | None = None
    encoder_check: Mapping[str, Any] | None = None
    peak_bytes: int = 0  # peak resident memory of this process (VmHWM)
    peak_device_bytes: int | None = None  # where JAX reports it (GPU/TPU memory_stats)
    seconds: float = 0.0
    loaded: LoadedSummary | None = None
    findings: tuple[Finding, ...] = field(default=(), compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite floats become None; ``findings`` belong in the report's findings)."""
        data = asdict(self)
        data.pop("findings")
        return _json_ready(data)


def _json_ready(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return value


# --- memory ------------------------------------------------------------------------------------------


def _status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_rss_bytes() -> int:
    """Peak resident memory of this process: VmHWM on Linux, else ru_maxrss."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def current_rss_bytes() -> int:
    kib = _status_kib("VmRSS")
    return (kib or 0) * 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, ``/proc/self/clear_refs`` value 5)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


# --- the run ---------------------------------------------------------------------------------------------


class _Failures:
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.findings: list[Finding] = []

    def add(self, finding_id: str, message: str, location: str | None = None) -> None:
        self.messages.append(message)
        self.findings.append(finding(finding_id, message, location))


def run_release(release, weights, architecture, options: RunOptions = RunOptions()) -> RunResult:
    """Load, run and probe the release (see the module docstring for what raises and what fails)."""
    started = time.perf_counter()
    if options.dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, not {options.dtype!r}")
    if options.max_probe_tokens < 2:
        raise UsageError("the probe needs at least 2 tokens")
    failures = _Failures()
    family = architecture.family
    refusal = _refusal(architecture)
    if refusal is not None:
        failures.add(*refusal)
        return _result(failures, started, family=family)
    reference = None
    if options.reference is not None:
        from openaudit.run.probes import load_reference

        reference = load_reference(options.reference)
    try:
        import jax  # noqa: F401 - the only place the audit imports jax
    except ImportError as exc:
        raise AuditIncomplete(f"--run needs jax ({exc}); install openaudit with its run extra") from None

    from openaudit.run import distributed

    process = distributed.initialize(options.coordinator, options.num_processes, options.process_id)
    try:
        return _run(release, weights, architecture, options, reference, failures, started, process)
    finally:
        if options.coordinator is not None:
            distributed.shutdown()


def _known(finding_id: str, fallback: str) -> str:
    from openaudit.findings import catalogue

    return finding_id if finding_id in catalogue() else fallback


def _refusal(architecture) -> tuple[str, str] | None:
    if architecture.family is None:
        return "run-not-runnable", f"cannot run: the architecture is unknown ({architecture.reason})"
    if architecture.config is None:
        return "run-not-runnable", f"cannot run: the {architecture.family} configuration could not be read ({architecture.reason})"
    if architecture.status == "mismatch":
        hard = [m for m in architecture.check.mismatches if not m.soft]
        first = f" (first: {hard[0].kind} {hard[0].tensor})" if hard else ""
        return "run-not-runnable", (f"cannot run: the weights do not match the {architecture.family} architecture, "
                                    f"{len(hard)} difference(s){first}")
    return None


@dataclass(frozen=True)
class Execution:
    """What ``execute`` produced: the head's output for each sequence (host arrays) and how it ran."""

    outputs: tuple[Any, ...]
    stats: Any  # stream.StreamStats
    plan: Any  # loader.LoadPlan
    loaded_tensors: int
    loaded_bytes: int
    sharded_tensors: int
    mesh: Mapping[str, int]
    streamed: bool
    head_gives_logits: bool  # the head reads a (vocabulary, width) matrix; else it returns hidden states


def plan_run(weights, architecture, options: RunOptions = RunOptions()):
    """(forward-pass module, load plan). Raises KeyError (no forward pass) or MalformedInput."""
    from openaudit.run import loader as loading
    from openaudit.run.models import forward_model

    model = forward_model(architecture.family)
    return model, loading.plan_load(weights, architecture, model, loading.compute_dtype(options.dtype))


def execute(release, architecture, model, plan, sequences, options: RunOptions = RunOptions(), devices=None,
            token_types=None) -> Execution:
    """Place the weights on ``devices`` (default: all), run every (1, T) int32 sequence, return outputs.
    ``token_types`` (one (1, T) array or None per sequence) reach an ``embed`` that takes segment ids.

    Streams layer by layer when the plan exceeds ``options.memory_budget``. Raises whatever loading or
    the forward pass raises; ``run_release`` turns that into failures.
    """
    import jax

    from openaudit.run import loader as loading
    from openaudit.run import stream
    from openaudit.run.sharding import make_mesh

    compute = loading.compute_dtype(options.dtype)
    mesh = make_mesh(jax.devices() if devices is None else devices)
    streamed = options.memory_budget is not None and plan.nbytes > options.memory_budget
    loader = loading.Loader(release, plan, mesh, architecture.config, touch=streamed and options.prefetch)
    program = stream.compile_program(model, architecture.config, mesh, compute)
    embed_names, head_names = stream.globals_used(model, architecture.config, plan.global_entries, compute)
    if token_types is not None and not stream.accepts_token_types(model):
        token_types = None
    outputs, stats = stream.run_forward(program, plan, loader, list(sequences), streamed=streamed,
                                        embed_names=embed_names, head_names=head_names, prefetch=options.prefetch,
                                        token_types=token_types, budget=options.memory_budget)
    vocab = getattr(architecture.config, "vocab_size", None)
    logits = any(e.name in head_names and len(e.shape) == 2 and e.shape[0] == vocab for e in plan.global_entries)
    return Execution(tuple(outputs), stats, plan, loader.loaded_tensors, loader.loaded_bytes, loader.sharded_tensors,
                     dict(mesh.shape), streamed, logits)


def _run(release, weights, architecture, options: RunOptions, reference, failures: _Failures, started: float,
         process) -> RunResult:
    import jax

    devices = jax.devices()
    common = dict(family=architecture.family, devices=len(devices), device_kind=devices[0].device_kind,
                  platform=devices[0].platform, processes=process.count, process_index=process.index,
                  mesh={"model": len(devices)})
    try:
        model, plan = plan_run(weights, architecture, options)
    except (KeyError, ImportError) as exc:
        failures.add("run-not-runnable", f"cannot run: no forward pass for the {architecture.family} family ({exc})")
        return _result(failures, started, **common)
    except MalformedInput as exc:
        failures.add(_known(exc.finding_id, "run-not-runnable"), f"cannot load the weights: {exc}")
        return _result(failures, started, **common)
    if not plan.entries:
        failures.add("run-not-runnable", "cannot run: none of the stored tensors is one the forward pass reads")
        return _result(failures, started, **common)

    sequences, probe = _sequences(release, weights, architecture, options, reference, failures)
    try:
        types = [reference.token_type_ids if label == "reference" and reference is not None else None for label, _ in sequences]
        run = execute(release, architecture, model, plan, [ids for _, ids in sequences], options, devices, types)
    except MalformedInput as exc:
        failures.add(_known(exc.finding_id, "run-forward-failed"), f"the weights could not be loaded: {exc}")
        return _result(failures, started, **common)
    except KeyError as exc:
        failures.add("run-forward-failed", f"the forward pass needs tensor {exc}, which the weights do not hold")
        return _result(failures, started, **common)
    except Exception as exc:  # noqa: BLE001 - hostile weights must give a verdict, not a traceback
        text = str(exc).splitlines()[0][:300] if str(exc) else ""
        if "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower():
            failures.add("run-out-of-memory", f"the devices ran out of memory ({text}); "
                                              "a --memory-budget streams the weights layer by layer")
        else:
            failures.add("run-forward-failed", f"the forward pass failed: {type(exc).__name__}: {text}")
        return _result(failures, started, **common)

    stats = run.stats
    notes = ()
    if run.streamed and plan.largest_layer_bytes * 2 > options.memory_budget:
        # Not a failure of the release: said so that the reader knows the budget could not be honoured.
        notes = ("two layers' weights exceed the memory budget, so the streamed run held more than the budget",)
    loaded = LoadedSummary(tensors=run.loaded_tensors, sharded_tensors=run.sharded_tensors, bytes=run.loaded_bytes,
                           dtype=options.dtype, mode=stats.mode, formats=plan.formats, methods=dict(plan.methods), memory_budget=options.memory_budget,
                           largest_layer_bytes=plan.largest_layer_bytes, unused_tensors=len(plan.unused),
                           peak_resident_weight_bytes=stats.peak_resident_weight_bytes,
                           load_seconds=round(stats.load_seconds, 4), wait_seconds=round(stats.wait_seconds, 4),
                           notes=notes)
    results = dict(zip((label for label, _ in sequences), run.outputs))
    checks = _checks(architecture, options, reference, probe, sequences, results, failures, run.head_gives_logits)
    return _result(failures, started, loaded=loaded, **checks, **common)


@dataclass(frozen=True)
class _Probe:
    ids: list[int]
    tokenizer: str | None
    masked: Any = None  # positions masked for the encoder check
    special: frozenset = frozenset()


def _sequences(release, weights, architecture, options: RunOptions, reference, failures: _Failures):
    """[(label, (1, T) int32 ids)]: the probe twice (determinism), then the reference's ids."""
    import numpy as np

    from openaudit.run import probes, tokenize

    config = architecture.config
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    limit = min(options.max_probe_tokens, _context_length(config))
    probe: _Probe | None = None
    search = tokenize.find_tokenizer(release, weights)
    if search.tokenizer is None:
        if reference is None:
            failures.add("run-no-tokenizer", "no usable tokenizer, so the probe text was not scored: " + "; ".join(search.problems))
    else:
        tokenizer = search.tokenizer
        text = probes.read_probe_text(options.probe_text)
        try:
            ids = tokenizer.encode(text)[:limit]
        except MalformedInput as exc:
            failures.add("run-tokenizer-unreadable", f"the tokenizer {tokenizer.description} failed on the probe text: {exc}")
            ids = None
        if ids is None:
            pass
        elif len(ids) < 2:
            failures.add("run-tokenizer-unreadable", f"the tokenizer {tokenizer.description} gives {len(ids)} token(s) for the probe text")
        elif vocab and max(ids) >= vocab:
            failures.add("run-tokenizer-unreadable", f"the tokenizer {tokenizer.description} gives id {max(ids)}, but the model "
                                                     f"has {vocab} embeddings: tokenizer and weights do not belong together")
        else:
            probe = _Probe(ids, tokenizer.description)
            if architecture.family == "bert":
                probe = _mask_probe(probe, tokenizer, options.seed, failures)
    sequences: list[tuple[str, Any]] = []
    if probe is not None:
        shown = probe.ids if probe.masked is None else probe.masked[0]
        row = np.asarray([shown], dtype=np.int32)
        sequences += [("probe", row), ("repeat", row.copy())]
    if reference is not None:
        sequences.append(("reference", reference.input_ids))
    if probe is None:
        count = max(2, min(SYNTHETIC_TOKENS, _context_length(config)))
        row = np.random.default_rng(options.seed).integers(0, max(vocab, 1), size=(1, count), dtype=np.int32)
        sequences += [("probe", row), ("repeat", row.copy())]
    return sequences, probe


def _mask_probe(probe: _Probe, tokenizer, seed: int, failures: _Failures) -> _Probe:
    import numpy as np

    from openaudit.run import probes

    if tokenizer.mask_id is None:
        failures.add("run-tokenizer-unreadable", f"the tokenizer {tokenizer.description} has no mask token for the encoder check")
        return _Probe(probe.ids, probe.tokenizer)
    special = set(tokenizer.special_ids) | {tokenizer.mask_id}
    positions = probes.mask_positions(probe.ids, special, seed)
    masked = np.asarray(probe.ids, dtype=np.int32).copy()
    masked[positions] = tokenizer.mask_id
    return _Probe(probe.ids, probe.tokenizer, (masked.tolist(), positions), frozenset(special))


def _context_length(config) -> int:
    for name in ("max_position_embeddings", "n_positions", "sequence_len"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_MAX_PROBE_TOKENS


def _checks(architecture, options: RunOptions, reference, probe: _Probe | None, sequences, results, failures: _Failures,
            head_gives_logits: bool) -> dict:
    import numpy as np

    from openaudit.run import probes

    probe_out, repeat_out = results["probe"][0], results["repeat"][0]
    finite = all(probes.all_finite(out) for out in results.values())
    if not finite:
        bad = [label for label, out in results.items() if not probes.all_finite(out)]
        count = int(sum((~np.isfinite(results[label])).sum() for label in bad))
        failures.add("run-logits-not-finite", f"{count:,} output value(s) are NaN or infinite (runs: {', '.join(bad)})")
    deterministic = bool(np.array_equal(probe_out, repeat_out, equal_nan=True))
    if not deterministic:
        failures.add("run-nondeterministic", "two runs of the same tokens through the same weights gave different outputs "
                                             f"(max difference {float(np.nanmax(np.abs(probe_out - repeat_out))):.3g})")
    checks: dict[str, Any] = dict(logits_finite=finite, deterministic=deterministic,
                                  tokens=int(sequences[0][1].shape[1]),
                                  tokenizer=probe.tokenizer if probe is not None else None)
    vocab = int(probe_out.shape[-1])
    is_encoder = architecture.family == "bert"
    if probe is not None and not is_encoder and not head_gives_logits:
        if reference is None:
            failures.add("run-no-output-head", "the checkpoint has no output head (neither its own nor tied embeddings): "
                                               "its output is hidden states, so perplexity cannot be measured")
    elif probe is not None and not is_encoder:
        value = probes.perplexity(probe_out, probe.ids) if finite else float("nan")
        threshold = probes.perplexity_threshold(vocab)
        checks.update(perplexity=value, uniform_perplexity=vocab, perplexity_threshold=threshold)
        if finite and not value < threshold:
            failures.add("run-perplexity-uniform", f"perplexity {value:,.1f} on the probe text is not far below the uniform "
                                                   f"{vocab:,} (it must be under {threshold:,.1f}): the weights do not "
                                                   "behave like a trained model of this tokenizer")
    if is_encoder:
        checks["encoder_check"] = _encoder_check(probe, probe_out, head_gives_logits, failures, reference)
    if reference is not None:
        difference, scale, compared = probes.reference_difference(results["reference"], reference)
        if difference is None:
            failures.add("run-reference-mismatch", f"the output shape {list(results['reference'].shape)} matches neither the "
                                                   f"reference's logits {list(reference.logits.shape)} nor its hidden states")
        else:
            limit = probes.reference_limit(options.dtype, scale)
            checks.update(reference_max_abs_diff=difference, reference_tolerance=limit)
            if not difference <= limit:
                failures.add("run-reference-mismatch", f"the {compared} differ from the reference {reference.path} by up to "
                                                       f"{difference:.3g} (tolerance {limit:.3g})")
    return checks


def _encoder_check(probe: _Probe | None, output, head_gives_logits: bool, failures: _Failures, reference) -> dict | None:
    from openaudit.run import probes

    if probe is None or probe.masked is None:
        if reference is None:
            failures.add("run-encoder-check-failed", "the encoder check needs the release's tokenizer with a mask token, or --reference")
        return None
    if not head_gives_logits:
        if reference is None:
            failures.add("run-encoder-check-failed", "the encoder has no masked-language-model head (its output is hidden "
                                                     "states), so only a --reference can check it")
        return {"kind": "hidden-states", "measured": False}
    masked_ids, positions = probe.masked
    accuracy = probes.masked_accuracy(output, probe.ids, positions)
    passed = accuracy >= probes.MIN_MASKED_ACCURACY
    if not passed:
        failures.add("run-encoder-check-failed", f"the masked-token head restored {accuracy:.1%} of {len(positions)} masked "
                                                 f"tokens (at least {probes.MIN_MASKED_ACCURACY:.0%} needed)")
    return {"kind": "masked-token accuracy", "masked": int(len(positions)), "accuracy": accuracy,
            "threshold": probes.MIN_MASKED_ACCURACY, "passed": passed}


def _device_peak_bytes() -> int | None:
    try:
        import jax

        stats = [device.memory_stats() for device in jax.local_devices()]
    except Exception:  # noqa: BLE001 - not every backend reports memory
        return None
    peaks = [s.get("peak_bytes_in_use") for s in stats if s]
    peaks = [p for p in peaks if isinstance(p, int)]
    return max(peaks) if peaks else None


def _result(failures: _Failures, started: float, **values) -> RunResult:
    device_peak = _device_peak_bytes() if "devices" in values else None
    return RunResult(
        status="fail" if failures.messages else "pass",
        failures=tuple(failures.messages),
        peak_bytes=peak_rss_bytes(),
        peak_device_bytes=device_peak,
        seconds=round(time.perf_counter() - started, 3),
        findings=tuple(failures.findings),
        **values,
    )
