"""The one training loop: schedule through transformers.get_scheduler, clipping, logging, exact resume."""

import pytest
import torch

from speechbraid.training.loop import TrainingLoop, make_scheduler
from speechbraid.training.runlog import read_train_log


def _setup(run_dir, steps=8, clip=1.0, every=3):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = torch.Generator().manual_seed(1)  # the trainer's own state: a sampler it checkpoints
    loop = TrainingLoop(model, optimizer, make_scheduler(optimizer, steps, 0.25), run_dir, clip=clip,
                        checkpoint_every=every, state=lambda: {"data": data.get_state()})

    def step_fn(step):
        x = torch.randn(16, 4, generator=data)
        loss = ((model(x) - x.sum(dim=1, keepdim=True)) ** 2).mean() + 0.01 * torch.randn(()).abs()  # uses torch RNG
        loss.backward()
        return {"loss": loss.item()}

    return model, loop, data, step_fn


def test_schedule_warms_up_then_decays_through_get_scheduler():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_scheduler(optimizer, 10, 0.2)
    rates = []
    for _ in range(10):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates[:3] == pytest.approx([0.0, 0.5, 1.0]) and rates[-1] == pytest.approx(0.125)
    floor = make_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), 10, 0.2,
                           "cosine_with_min_lr", 0.1)
    for _ in range(10):
        floor.optimizer.step()
        floor.step()
    assert floor.get_last_lr()[0] == pytest.approx(0.1)


def test_a_run_cut_after_a_checkpoint_resumes_to_the_uninterrupted_result(tmp_path):
    model, loop, _, step_fn = _setup(tmp_path / "full")
    assert loop.restore(resume=False) == (0, None)
    loop.run(step_fn, 0, 8)
    full = read_train_log(tmp_path / "full")
    assert [r["step"] for r in full] == list(range(1, 9)) and all("grad_norm" in r and "lr" in r for r in full)

    cut_model, cut, data, cut_fn = _setup(tmp_path / "cut")
    cut.restore(resume=False)

    def killed_in_step_5(step):
        if step == 4:
            raise KeyboardInterrupt
        return cut_fn(step)

    with pytest.raises(KeyboardInterrupt):  # steps 1-4 ran and are logged; the last checkpoint is step 3
        cut.run(killed_in_step_5, 0, 8)
    again_model, again, again_data, again_fn = _setup(tmp_path / "cut")
    start, state = again.restore(resume=True)
    assert start == 3 and [r["step"] for r in read_train_log(tmp_path / "cut")] == [1, 2, 3]
    again_data.set_state(state["data"])
    again.run(again_fn, start, 8)
    assert [r["loss"] for r in read_train_log(tmp_path / "cut")] == [r["loss"] for r in full]
    assert torch.equal(again_model.weight, model.weight) and torch.equal(again_model.bias, model.bias)


def test_gradients_are_clipped_and_the_norm_before_clipping_is_logged(tmp_path):
    model, loop, _, step_fn = _setup(tmp_path, clip=1e-3)
    before = model.weight.detach().clone()
    loop.restore(resume=False)
    loop.run(step_fn, 0, 2)  # step 0 has lr 0 (warm-up); step 1 moves by lr * clipped gradient
    first, second = read_train_log(tmp_path)
    assert first["grad_norm"] > 1e-2 and second["grad_norm"] > 1e-2
    assert (model.weight - before).norm() <= second["lr"] * 1e-3 + 1e-9
