"""Runs one speech-LLM training in its own process (alone or under torchrun) for the distributed and kill tests.

    python train_driver.py CONFIG.yaml OUT [--stop-after N] [--resume] [--kill-at WHERE]

``--kill-at`` makes the process SIGKILL itself at a chosen moment (a real kill: no cleanup, no exception):
``backward:K`` at the K-th backward pass (inside a step), ``state:N`` while checkpoint N is half written (weights
in its temporary directory, no state yet), ``latest:N`` after checkpoint N's directory is in place but before
``latest`` names it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import torch


def _kill() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(where: str) -> None:
    from speechbraid.training import checkpoint, loop

    kind, _, value = where.partition(":")
    target = int(value)
    if kind == "backward":
        calls = [0]
        backward = loop.TrainingLoop.backward

        def counted(self, loss):  # type: ignore[no-untyped-def]
            calls[0] += 1
            if calls[0] == target:
                _kill()
            backward(self, loss)

        loop.TrainingLoop.backward = counted
    elif kind == "state":
        save = torch.save

        def half_written(obj, path, *args, **kwargs):  # type: ignore[no-untyped-def]
            if Path(path).parent.name.startswith(f".step-{target:08d}."):
                _kill()
            save(obj, path, *args, **kwargs)

        torch.save = half_written
    elif kind == "latest":
        write = checkpoint.atomic_write_text

        def before_latest(path, text):  # type: ignore[no-untyped-def]
            if Path(path).name == checkpoint.LATEST and text.strip() == f"step-{target:08d}":
                _kill()
            write(path, text)

        checkpoint.atomic_write_text = before_latest
    else:
        raise SystemExit(f"unknown --kill-at {where!r}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("out")
    parser.add_argument("--stop-after", type=int)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill-at")
    args = parser.parse_args()
    from speechbraid.config import load_config
    from speechbraid.training.trainer import TrainConfig, Trainer

    if args.kill_at:
        _arm(args.kill_at)
    trainer = Trainer(load_config(TrainConfig, Path(args.config), []), args.out)
    trainer.fit(resume=args.resume, progress=False, stop_after=args.stop_after)
    if trainer.world > 1:
        print(f"rank {trainer.rank}: parameters are {type(next(trainer.model.parameters())).__name__}")
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
