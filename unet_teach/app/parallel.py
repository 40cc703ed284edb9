"""Data-parallel training under ``torchrun``: where each process stands, and what they share.

torchrun starts one process (a *rank*) a GPU, or a few CPU processes, and tells each its
place in environment variables (:class:`Ranks`). Every rank holds the whole model
(``DistributedDataParallel`` averages the gradients after each backward pass) and trains
on its own crops; what else they must agree on goes through this module:

* :func:`join` - the process group: NCCL between GPUs, gloo between CPU processes;
* :func:`from_rank0` - whether to take another step and where the schedule stands: rank 0
  keeps the clock, so all ranks stop at the same step and none waits forever;
* :func:`mean_over_ranks` - the loss, averaged, so that all ranks agree it is finite;
* :func:`copy_buffers_from_rank0` - batch norm's running averages at the end;
* :func:`state_sha256` and :func:`debug_dump` - the test hook ``UNET_TEACH_DDP_DEBUG_DIR``,
  which shows that the ranks end equal and saw different crops.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from .images import InputError

#: The environment variable of the test hook of a data-parallel run; when it names a
#: folder, every rank writes ``rank<R>.json`` there at the end (hashes of its weights and
#: of its first batch).
DEBUG_DIR_ENV = "UNET_TEACH_DDP_DEBUG_DIR"


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in a ``torchrun`` launch; rank 0 of 1 without one.

    torchrun starts the processes and tells each its place: ``RANK`` (0 .. N-1 over all
    machines), ``WORLD_SIZE`` (N) and ``LOCAL_RANK`` (its index on its own machine, which
    picks its GPU). A launch of one process is data-parallel too (a world of one: the
    same code path, which is how a one-GPU machine checks it).

    Example:
        >>> Ranks.from_env({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1"})
        Ranks(rank=5, world=8, local=1, launched=True)
        >>> Ranks.from_env({}).parallel
        False
    """

    rank: int = 0
    world: int = 1
    local: int = 0
    launched: bool = False

    @classmethod
    def from_env(cls, env=None) -> "Ranks":
        """This process's place, from torchrun's variables (``os.environ`` by default)."""
        env = os.environ if env is None else env
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)),
                   int(env.get("LOCAL_RANK", 0)), "WORLD_SIZE" in env)

    @property
    def main(self) -> bool:
        """Whether this is rank 0, which prints, keeps the clock, validates and writes."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        """Whether torchrun started this process (then it joins a process group)."""
        return self.launched or self.world > 1


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """This rank's device: GPU ``LOCAL_RANK`` when a torchrun launch uses CUDA.

    Example:
        >>> rank_device(torch.device("cpu"), Ranks(rank=1, world=2, local=1, launched=True))
        device(type='cpu')
    """
    if not ranks.parallel or device.type != "cuda":
        return device
    if device.index is not None:
        raise InputError(f"--device {device}: under torchrun every process takes the GPU of "
                         "its LOCAL_RANK; pass --device cuda (or no --device)")
    gpus = torch.cuda.device_count()
    if ranks.local >= gpus:
        raise InputError(f"LOCAL_RANK {ranks.local}: this machine has {gpus} GPU(s); start at "
                         f"most one process a GPU (torchrun --nproc-per-node={gpus})")
    return torch.device("cuda", ranks.local)


def join(ranks: Ranks, device: torch.device) -> None:
    """Join the launch's process group: NCCL between GPUs, gloo between CPU processes.

    The 30-minute timeout is how long a rank waits for the others at a collective: long
    enough for rank 0 to validate and write the file while the others wait at a barrier.

    Example:
        >>> join(Ranks(), torch.device("cpu"))       # not launched by torchrun: nothing
    """
    if not ranks.parallel or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            timeout=timedelta(minutes=30),
                            device_id=device if device.type == "cuda" else None)


def from_rank0(go: bool, fraction: float, device: torch.device) -> tuple[bool, float]:
    """Rank 0's decision, on every rank: take another step?, and the schedule's position.

    Every rank's clock differs; if each decided alone, one could stop while another waits
    in the next step's all-reduce for ever, and their learning rates would differ.

    Example (a world of one process):
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> from_rank0(True, 0.25, torch.device("cpu"))
        (True, 0.25)
        >>> dist.destroy_process_group()
    """
    flags = torch.tensor([float(go), fraction], dtype=torch.float64, device=device)
    dist.broadcast(flags, src=0)
    return bool(flags[0].item()), float(flags[1].item())


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean over ranks (all ranks then agree on whether it is finite).

    Example (a world of one process):
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> mean_over_ranks(torch.tensor(3.0))
        tensor(3.)
        >>> dist.destroy_process_group()
    """
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / dist.get_world_size()


def copy_buffers_from_rank0(model: torch.nn.Module) -> None:
    """Batch norm's running averages: rank 0's on every rank (DistributedDataParallel
    copies them at the start of every forward pass; the last pass changed each rank's).

    Example (a world of one process):
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> norm = torch.nn.BatchNorm2d(2)
        >>> copy_buffers_from_rank0(norm)
        >>> norm.running_var.tolist()
        [1.0, 1.0]
        >>> dist.destroy_process_group()
    """
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def state_sha256(model: torch.nn.Module) -> str:
    """A SHA-256 of a model's state (weights and buffers, names included).

    Example:
        >>> net = torch.nn.Linear(2, 1)
        >>> state_sha256(net) == state_sha256(net), len(state_sha256(net))
        (True, 64)
    """
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
                      .numpy().tobytes())
    return digest.hexdigest()


def debug_dump(model, ranks: Ranks, step: int, first_batch: str | None) -> None:
    """The test hook: write ``rank<R>.json`` into ``$UNET_TEACH_DDP_DEBUG_DIR`` if set.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> os.environ[DEBUG_DIR_ENV] = folder
        >>> debug_dump(torch.nn.Linear(2, 1), Ranks(), step=5, first_batch=None)
        >>> json.loads(Path(folder, "rank0.json").read_text())["step"]
        5
        >>> del os.environ[DEBUG_DIR_ENV]
    """
    folder = os.environ.get(DEBUG_DIR_ENV)
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    Path(folder, f"rank{ranks.rank}.json").write_text(json.dumps(
        {"rank": ranks.rank, "world": ranks.world, "step": step,
         "state_sha256": state_sha256(model), "first_batch_sha256": first_batch}))
