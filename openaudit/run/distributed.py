"""Several processes, one run: ``jax.distributed`` for releases that outgrow one machine.

Every process runs the same ``openaudit audit SOURCE --run --coordinator HOST:PORT --num-processes N
--process-id I`` on its own copy (or mount) of the release. ``initialize`` must come before anything
touches a JAX backend; after it, ``jax.devices()`` lists every process's devices, the mesh spans them
all, ``jax.make_array_from_callback`` asks each process only for the shards its own devices hold (so
each process reads only its part of each weight), and the head's logits are gathered onto every device,
so process 0 holds them whole.

On CPU, cross-process collectives need an implementation: jax 0.10 uses gloo by default
(``jax_cpu_collectives_implementation``); older versions defaulted to none, so it is set explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

from openaudit.errors import AuditIncomplete


@dataclass(frozen=True)
class ProcessInfo:
    index: int
    count: int


def initialize(coordinator: str | None, num_processes: int | None, process_id: int | None,
               timeout_seconds: int = 300) -> ProcessInfo:
    """Join the run's processes (a no-op without a coordinator). Raises AuditIncomplete when the
    arguments are inconsistent or the coordinator cannot be reached: the run cannot happen at all."""
    import jax

    if coordinator is None:
        if num_processes not in (None, 1) or process_id not in (None, 0):
            raise AuditIncomplete("--num-processes and --process-id need --coordinator HOST:PORT")
        return ProcessInfo(jax.process_index(), jax.process_count())
    if num_processes is None or process_id is None:
        raise AuditIncomplete("--coordinator needs --num-processes and --process-id")
    if not 0 <= process_id < num_processes:
        raise AuditIncomplete(f"--process-id {process_id} is not in 0..{num_processes - 1}")
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise AuditIncomplete(f"--coordinator must be HOST:PORT, not {coordinator!r}")
    if jax.distributed.is_initialized():
        return ProcessInfo(jax.process_index(), jax.process_count())
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except (AttributeError, KeyError, ValueError):  # pragma: no cover - option renamed in some version
        pass
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id, initialization_timeout=timeout_seconds)
    except Exception as exc:  # noqa: BLE001 - jax raises RuntimeError/XlaRuntimeError variants
        raise AuditIncomplete(f"jax.distributed could not start ({coordinator}, process {process_id} of "
                              f"{num_processes}): {exc}") from None
    return ProcessInfo(jax.process_index(), jax.process_count())


def shutdown() -> None:
    """Leave the group (lets the coordinator end cleanly); harmless without one."""
    import jax

    if jax.distributed.is_initialized():
        jax.distributed.shutdown()
