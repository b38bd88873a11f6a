"""train: the teaching material's seven steps, with a hand-written SGD update.

Reads:  PREPARED/{train,valid}.pt (from preprocess); params train.*.
Writes: MODEL (weights, class names and input normalisation) and LIVE, a
        dvclive folder with per-epoch train/valid loss and valid accuracy.

Runs as one process, or with train.nproc > 1 as that many under torchrun (this
process becomes the launcher; across machines, start it with torchrun
--nnodes yourself). Each rank trains on its share of every global batch (a
share may be empty), and gradients are summed across ranks before the update,
so all ranks hold the same weights; rank 0 writes the outputs. With BatchNorm
(the cnn), each rank normalises with its own share's statistics, as
DistributedDataParallel does, unless train.sync_bn asks for the whole batch's;
either way the running statistics are averaged across ranks before each
validation, so the saved model's describe all the training data. Each rank
validates its share of the validation set, and the sums are all-reduced.

With train.ema, what is validated and saved is a moving average of the weights
whose decay warms up (update_average), and whose BatchNorm statistics are
recomputed for the averaged weights before each validation (recompute_batchnorm).
The loss is checked for divergence every CHECK_EVERY steps, not every step, so a
GPU does not wait on the host after each batch.
"""

import copy
import hashlib
import math
import os
import platform
import re
import sys
from collections.abc import Callable
from functools import partial

import torch
import torch.distributed as dist
from fastprogress.fastprogress import progress_bar

from digits.augment import random_affine, warp
from digits.cli import StageError, path_args, run
from digits.files import atomic_dir, load_tensors, save_tensors
from digits.models import build_model, model_loss, normalise, score
from digits.parallel import average_buffers, check_gpus, synchronise_batchnorm, threads_per_process
from digits.params import Train, load_params

CHECK_EVERY = 50  # steps between divergence checks, each of which waits for the device once
BN_IMAGES = 4096  # training images (not augmented) that the average's BatchNorm statistics come from


def pick_device(setting: str) -> torch.device:
    if setting == "cuda" and not torch.cuda.is_available():
        raise StageError(
            "params.yaml: train.device = 'cuda' but no CUDA GPU is available; allowed here: auto, cpu"
        )
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(setting)


# x86 flags of instruction sets that math libraries choose kernels by; the others (pti, ibrs,
# ...) change with the kernel's settings, not the CPU. ARM's Features are all instruction sets.
ISA_FLAGS = re.compile(
    r"(sse|ssse|avx|fma|f16c|bmi|amx|movbe|popcnt|abm|adx|aes|pclmul|sha|gfni|vaes|vpclmul)"
)


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> tuple[str, str]:
    """The CPU's model name and a digest of its instruction-set flags, as Linux reports them.
    ATen's cpu_capability is coarse: oneDNN picks its kernels by finer features, so two CPUs
    with the same capability can train other bytes (bench/cpu_paths.py)."""
    try:
        with open(cpuinfo) as f:  # one block per CPU, all alike: the last one's fields
            fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in f if ":" in line)}
    except OSError:
        fields = {}
    model = fields.get("model name") or fields.get("Hardware") or platform.processor() or "unknown"
    if "flags" in fields:
        flags = sorted(f for f in fields["flags"].split() if ISA_FLAGS.match(f))
    else:
        flags = sorted(fields.get("Features", "").split())
    return model, hashlib.sha256(" ".join(flags).encode()).hexdigest()[:12] if flags else "unknown"


def machine_facts(device: torch.device) -> dict:
    cpu, cpu_flags = cpu_model()
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "processes": dist.get_world_size() if dist.is_initialized() else 1,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": cpu,
        "cpu_flags": cpu_flags,
        "torch": torch.__version__,
    }


def one_cycle(progress: float, lr_max: float, warmup: float = 0.25) -> float:
    """Learning rate at `progress` in [0, 1]: cosine up from lr_max/25, then cosine down to ~0."""
    if progress < warmup:
        return lr_max * (0.04 + 0.96 * (1 - math.cos(math.pi * progress / warmup)) / 2)
    return lr_max * (1 + math.cos(math.pi * (progress - warmup) / (1 - warmup))) / 2


@torch.no_grad()
def sgd_step(
    weights: list[torch.Tensor],
    velocity: list[torch.Tensor],
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
) -> None:
    """Step 5. With momentum 0 and no weight decay, `v` is just the gradient."""
    for p, v in zip(weights, velocity):
        v.mul_(momentum).add_(p.grad + weight_decay * p.data)
        p.data -= lr * v
        p.grad = None


def train_step(
    predict: Callable[[torch.Tensor], torch.Tensor],
    loss_fn: Callable,
    xb: torch.Tensor,
    yb: torch.Tensor,
    weights: list[torch.Tensor],
    velocity: list[torch.Tensor],
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    share: float = 1.0,
) -> torch.Tensor:
    """Steps 2 to 5 on one batch. `share` is this rank's part of the global batch."""
    preds = predict(xb)  # 2. predict
    loss = loss_fn(preds, yb) if len(yb) else preds.sum()  # 3. compute the loss (0 for an empty share)
    (loss * share).backward()  # 4. compute the gradients
    if dist.is_initialized():  #    ... summed over ranks: the global batch's gradient
        for p in weights:
            dist.all_reduce(p.grad)
    sgd_step(weights, velocity, lr, momentum, weight_decay)  # 5. step the weights
    return loss.detach()


def check_finite(value: float, what: str, epoch: int, step: int, lr: float) -> None:
    if not math.isfinite(value):
        raise StageError(
            f"training diverged at epoch {epoch + 1}, step {step}: {what} is {value}; "
            f"lower train.lr (now {lr})"
        )


def check_losses(losses: list[torch.Tensor], last_step: int, epoch: int, lr: float) -> None:
    """check_finite for the losses of the steps up to `last_step`, kept on the device: one wait
    for the device for all of them, and the error names the first step that went wrong."""
    bad = ~torch.isfinite(torch.stack(losses))
    if bad.any():
        first = int(bad.nonzero()[0])
        check_finite(losses[first].item(), "loss", epoch, last_step - len(losses) + 1 + first, lr)


def average_decay(decay: float, updates: int) -> float:
    """The decay of the average's update after `updates` earlier ones. The first copies the
    weights (as Keras's optimizers do), so the average never holds the random initial weights;
    then TensorFlow's ExponentialMovingAverage warm-up, min(decay, (1 + t) / (10 + t)), which
    averages over about the last tenth of the run until that reaches `decay`."""
    return min(decay, (1 + updates) / (10 + updates)) if updates else 0.0


@torch.no_grad()
def update_average(average: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """average = decay * average + (1 - decay) * weights. BatchNorm's running statistics are
    left alone: recompute_batchnorm gives the average its own before it is used."""
    for a, p in zip(average.parameters(), model.parameters()):
        a.lerp_(p, 1 - decay)


@torch.no_grad()
def recompute_batchnorm(
    model: torch.nn.Module, x: torch.Tensor, mean: float, std: float, batch_size: int = 1024
) -> None:
    """BatchNorm's running statistics for the model's own weights: the plain mean, over the batches
    of x, of each batch's (as torch.optim.swa_utils.update_bn). An average of weights is not an
    average of what they compute, so neither the live model's statistics nor their average fit it."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    was_training = model.training
    model.train()
    for k, i in enumerate(range(0, len(x), batch_size)):
        for m in norms:  # running = running + (batch - running) / (k + 1): the mean of k + 1 batches
            m.momentum = 1 / (k + 1)
        model(normalise(x[i : i + batch_size], mean, std))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was_training)


def validate(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, mean: float, std: float, rank: int, world: int
) -> tuple[float, float]:
    """Validation loss and accuracy; with several ranks, each scores its share and the sums are added."""
    if world == 1:
        return score(model, x, y, mean, std)[:2]
    n = len(y[rank::world])
    loss, accuracy, _ = score(model, x[rank::world], y[rank::world], mean, std) if n else (0.0, 0.0, None)
    sums = torch.tensor([loss * n, round(accuracy * n), n], dtype=torch.float64, device=x.device)
    dist.all_reduce(sums)
    return (sums[0] / sums[2]).item(), (sums[1] / sums[2]).item()


def fit(
    params: Train,
    train: dict,
    valid: dict,
    device: torch.device,
    log: Callable[[int, dict], None] = lambda epoch, row: None,
) -> tuple[torch.nn.Module, dict]:
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    torch.manual_seed(params.seed)
    x, y = train["x"].to(device), train["y"].to(device)
    vx, vy = valid["x"].to(device), valid["y"].to(device)
    # Scalars, so they travel with the weights and evaluate normalises the same way.
    pixels = x.float() / 255
    mean, std = pixels.mean().item(), pixels.std().item()
    del pixels  # a float copy of the whole set is 4 times its uint8 size
    model = build_model(params.model, len(train["classes"])).to(device)  # 1. initialise
    if params.sync_bn and world > 1:
        model = synchronise_batchnorm(model, device)
    # NHWC convolutions are faster per CNN batch on a CPU (bench/channels_last.py measures it).
    model = model.to(memory_format=torch.channels_last)
    average = copy.deepcopy(model) if params.ema else model  # what is validated and saved
    weights = list(model.parameters())
    velocity = [torch.zeros_like(p) for p in weights]
    order = torch.Generator().manual_seed(params.seed)
    jitter = torch.Generator().manual_seed(params.seed + 1)
    augmenting = params.shift or params.rotate or params.scale
    # For the average's BatchNorm statistics: the same images on every rank, so the same statistics.
    chosen = torch.randperm(len(y), generator=torch.Generator().manual_seed(params.seed + 2))[:BN_IMAGES]
    bn_images = x[chosen.to(device)]
    loss_fn = partial(model_loss, label_smoothing=params.label_smoothing)
    steps = params.epochs * math.ceil(len(y) / params.batch_size)
    step = 0
    for epoch in range(params.epochs):  # 6. repeat
        model.train()
        total = torch.zeros((), device=device)
        losses: list[torch.Tensor] = []
        batches = torch.randperm(len(y), generator=order).split(params.batch_size)
        shown = progress_bar(batches, leave=False) if rank == 0 and sys.stdout.isatty() else batches
        for batch in shown:
            shard = batch[rank::world].to(device)
            transform = None
            if augmenting:  # drawn for the whole batch, so every rank draws the same numbers
                theta = random_affine(len(batch), jitter, params.shift, params.rotate, params.scale)
                transform = partial(warp, theta=theta[rank::world])
            lr = one_cycle(step / steps, params.lr) if params.schedule == "one_cycle" else params.lr
            loss = train_step(
                model,
                loss_fn,
                normalise(x[shard], mean, std, transform),
                y[shard],
                weights,
                velocity,
                lr,
                params.momentum,
                params.weight_decay,
                share=len(shard) / len(batch),
            )
            if params.ema:
                update_average(average, model, average_decay(params.ema, step))
            step += 1
            losses.append(loss)  # on the device: no wait for it here
            total += loss * len(shard)
            if len(losses) == CHECK_EVERY:
                check_losses(losses, step, epoch, params.lr)
                losses = []
        if losses:
            check_losses(losses, step, epoch, params.lr)
        if params.ema:
            recompute_batchnorm(average, bn_images, mean, std)
        if world > 1:
            dist.all_reduce(total)
            average_buffers(average)
        valid_loss, valid_acc = validate(average, vx, vy, mean, std, rank, world)
        check_finite(valid_loss, "validation loss", epoch, step, params.lr)
        row = {"train_loss": total.item() / len(y), "valid_loss": valid_loss, "valid_accuracy": valid_acc}
        log(epoch, row)
    # 7. stop
    checkpoint = {
        "model": params.model,
        "classes": train["classes"],
        "mean": mean,
        "std": std,
        "state_dict": {k: v.cpu() for k, v in average.state_dict().items()},
    }
    return average, checkpoint


def main() -> None:
    args = path_args(__doc__, "prepared", "model", "live")
    params = load_params(Train)
    device = pick_device(params.device)
    if device.type == "cuda":
        check_gpus(params.nproc, torch.cuda.device_count())
    if params.nproc > 1 and "WORLD_SIZE" not in os.environ:
        # This process becomes torchrun, which starts nproc copies of this stage and waits for
        # them (in process: torch is imported already, a `python -m torchrun` would import it again).
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
        from torch.distributed.run import main as torchrun

        launch = ["--standalone", f"--nproc_per_node={params.nproc}", "-m", "stages.train", *sys.argv[1:]]
        try:
            torchrun(launch)
        except ChildFailedError as e:  # each rank printed its own error; torchrun's traceback adds nothing
            rank, failure = e.get_first_failure()
            raise StageError(
                f"rank {rank} of {params.nproc} under torchrun exited with status {failure.exitcode}"
            )
        return
    train, valid = load_tensors(args.prepared / "train.pt"), load_tensors(args.prepared / "valid.pt")
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:  # one of several processes started by torchrun
        local_world = int(os.environ["LOCAL_WORLD_SIZE"])
        if device.type == "cuda":
            check_gpus(local_world, torch.cuda.device_count(), "torchrun's --nproc_per_node")
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(device)  # before nccl starts, so each rank talks from its own GPU
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        torch.set_num_threads(threads_per_process(local_world))
    if dist.is_initialized() and dist.get_rank() > 0:
        fit(params, train, valid, device)  # in step with rank 0, which writes the outputs
    else:
        from dvclive import Live  # here: the launcher and the other ranks need not import it (0.5 s)

        with atomic_dir(args.live) as staging:
            live = Live(str(staging), save_dvc_exp=False, dvcyaml=None)
            # What decides the bytes of this run, beside its metrics: dvc-check compares a rerun
            # byte for byte where they match, and within tolerances where they don't.
            live.summary.update(machine_facts(device))

            def log(epoch: int, row: dict) -> None:
                print(
                    f"epoch {epoch + 1}/{params.epochs} " + " ".join(f"{k} {v:.4f}" for k, v in row.items()),
                    flush=True,
                )
                for name, value in row.items():
                    live.log_metric(name, value)
                live.next_step()

            _, checkpoint = fit(params, train, valid, device, log)
            live.end()
            save_tensors(args.model, checkpoint)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    run(main)
