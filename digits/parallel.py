"""What train needs when torchrun starts it as several processes (ranks).

Each rank trains on its share of every global batch. For the weights to be the
ones a single process would get, the ranks sum their gradients (train.py), and
BatchNorm needs the statistics of the whole batch, not of one share:
synchronise_batchnorm gives it that; average_buffers at least makes the saved
running statistics describe every rank's data, not rank 0's alone.
"""

import os
import warnings

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import nn

from digits.cli import StageError

# torch 2.14 marks this autograd-aware all_reduce deprecated; its suggested successor is a
# private module. It still works, and the warning would repeat once per process.
warnings.filterwarnings("ignore", message=".*distributed.nn.functional.all_reduce is deprecated.*")


class MomentSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm over the whole global batch on CPU (gloo), where torch's SyncBatchNorm
    refuses the tensors: the ranks all-reduce each channel's sum, sum of squares and count.
    The all-reduce is autograd's own, so the gradients flow through the shared statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized():
            return super().forward(x)
        channels = x.shape[1]
        count = torch.full((1,), x.numel() / channels, dtype=x.dtype, device=x.device)
        moments = dist_nn.all_reduce(torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count]))
        n = moments[-1]
        mean = moments[:channels] / n
        var = moments[channels : 2 * channels] / n - mean**2
        with torch.no_grad():  # the running statistics, as nn.BatchNorm2d keeps them
            self.num_batches_tracked += 1
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * n / (n - 1), self.momentum)
        shape = (1, channels, 1, 1)
        normalised = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return normalised * self.weight.view(shape) + self.bias.view(shape)


def synchronise_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """The same model with every BatchNorm2d computing whole-batch statistics across ranks."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = MomentSyncBatchNorm(child.num_features, child.eps, child.momentum)
            synced.load_state_dict(child.state_dict())
            setattr(model, name, synced.to(child.weight.device))
        else:
            synchronise_batchnorm(child, device)
    return model


@torch.no_grad()
def average_buffers(model: nn.Module) -> None:
    """Average BatchNorm's running mean and variance across ranks (counters stay as they are)."""
    world = dist.get_world_size()
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer /= world


def threads_per_process(local_world: int) -> int:
    """The CPUs this process may run on, shared by the ranks on this machine. sched_getaffinity
    sees a container's CPU set; os.cpu_count() would count the whole host's."""
    return max(1, len(os.sched_getaffinity(0)) // local_world)


def check_gpus(processes: int, visible: int, setting: str = "params.yaml: train.nproc") -> None:
    """One process per GPU: more would share a GPU, and nccl refuses that."""
    if processes > visible:
        raise StageError(
            f"{setting} = {processes} but {visible} CUDA GPU(s) are visible; "
            f"one process per GPU, so at most {visible}"
        )
