import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mavae.models.vae import VAE, kl_standard_normal, reconstruction_loss
from mavae.training import NonFiniteLossError, Trainer

SHAPE = (1, 16, 16)


def squares(n: int, seed: int = 0) -> torch.Tensor:
    """n images 16x16 with one bright 5x5 square at a random place on a dim background."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.rand(n, *SHAPE, generator=g)
    for i, (r, c) in enumerate(torch.randint(0, 11, (n, 2), generator=g).tolist()):
        x[i, 0, r:r + 5, c:c + 5] = 0.9
    return x


class RefitVAE(VAE):
    """Test double: a VAE whose prior N(center, I) is refitted at chosen epochs. ``refit`` draws
    from the global torch RNG (a random encoding becomes the center), so resume and DDP
    consistency of the refit seeding are exercised too."""

    refits_at_end = True

    def __init__(self, at=(0, 2)):
        super().__init__(SHAPE, latent_dim=4, width=8)
        self.at = set(at)
        self.register_buffer("center", torch.zeros(4))
        self.calls: list[torch.Tensor] = []
        self.picked: list[int] = []
        self.seen = 0

    def needs_refit(self, epoch):
        return epoch in self.at

    def refit(self, encodings, logvars=None):
        assert logvars.shape == encodings.shape
        self.calls.append(encodings.clone())
        self.logvars = logvars
        self.picked.append(int(torch.randint(len(encodings), ())))
        self.center.copy_(encodings[self.picked[-1]])

    def loss(self, x):
        self.seen += len(x)
        mean, logvar = self.encode(x)
        recon = reconstruction_loss(self.decode(self.reparameterize(mean, logvar)), x, "mse")
        kl = kl_standard_normal(mean - self.center, logvar)
        return {"loss": recon + kl, "recon": recon, "kl": kl}


def strip(history):
    return [{k: v for k, v in r.items() if k not in ("seconds", "refit_seconds")} for r in history]


def make(model_cls=RefitVAE, **kw):
    torch.manual_seed(123)
    return model_cls(**kw)


def test_vae_loss_falls():
    torch.manual_seed(0)
    model = VAE(SHAPE, latent_dim=4, width=8)
    hist = Trainer(model, squares(64).numpy(), epochs=8, batch_size=16, lr=3e-3, progress=False).fit()
    assert [h["epoch"] for h in hist] == list(range(8))
    assert set(hist[0]) == {"epoch", "loss", "recon", "kl", "seconds", "refit", "refit_end", "refit_seconds"}
    losses = [h["loss"] for h in hist]
    assert all(b < a for a, b in zip(losses, losses[1:]))  # 37.9, 33.1, ..., 19.0
    assert losses[-1] < 0.6 * losses[0]
    assert all(h["loss"] == pytest.approx(h["recon"] + h["kl"], rel=1e-5) for h in hist)
    bad = squares(4)
    bad[0, 0, 0, 0] = float("nan")
    for images in (bad, 2 * squares(4), squares(4)[:0]):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            Trainer(model, images, epochs=1)


def test_refit_called_at_requested_epochs_with_whole_training_set():
    images = squares(40)
    model = make(at=(0, 2))
    trainer = Trainer(model, images, epochs=4, batch_size=16, progress=False)
    before = trainer.encode(images)
    hist = trainer.fit()
    assert [h["refit"] for h in hist] == [True, False, True, False]
    assert [h["refit_end"] for h in hist] == [False, False, False, True]
    assert [h["refit_seconds"] > 0 for h in hist] == [True, False, True, True]  # the last: the final refit
    assert len(model.calls) == 3 and all(c.shape == (40, 4) for c in model.calls)
    assert torch.equal(model.calls[0], before)  # eval-mode means of all 40 images
    means, logvars = trainer.encode_posteriors(images)
    assert torch.equal(model.calls[-1], means) and torch.equal(model.logvars, logvars)
    assert torch.allclose(means, trainer.encode(images, batch_size=7), atol=1e-6)
    assert not torch.equal(model.calls[0], model.calls[1])
    assert model.seen == 4 * 40


def test_exact_resume(tmp_path):
    images = squares(40)
    ref_path, path = tmp_path / "ref.pt", tmp_path / "run" / "ckpt.pt"
    ref = make()
    ref_hist = Trainer(ref, images, epochs=4, batch_size=16, progress=False, checkpoint_path=ref_path).fit()

    def interrupt(trainer, epoch, record):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(make(), images, epochs=4, batch_size=16, progress=False, checkpoint_path=path,
                callbacks=[interrupt]).fit()
    assert torch.load(path, weights_only=True)["epoch"] == 2
    torch.manual_seed(999)  # the resumed run must not depend on the global RNG state
    resumed = make()
    hist = Trainer(resumed, images, epochs=4, batch_size=16, progress=False, checkpoint_path=path).fit()

    assert strip(hist) == strip(ref_hist)
    assert [h["refit"] for h in hist] == [True, False, True, False]
    ref_state, state = ref.state_dict(), resumed.state_dict()
    assert "center" in state and not torch.equal(state["center"], torch.zeros(4))
    assert all(torch.equal(ref_state[k], state[k]) for k in ref_state)
    assert len(resumed.calls) == 2  # epoch 2 and the end; epoch 0 came from the checkpoint
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["epoch"] == 4 and ckpt["history"][-1]["refit_end"]
    assert set(ckpt) == {"model", "optimizer", "epoch", "history", "setup"}
    assert not os.path.exists(str(path) + ".tmp")


class NaNVAE(RefitVAE):
    """Test double whose KL term becomes NaN at its ``bad_call``-th call of ``loss`` (0-based)."""

    def __init__(self, bad_call, grad_only=False):
        super().__init__(at=())
        self.bad_call, self.grad_only, self.n_calls = bad_call, grad_only, 0

    def loss(self, x):
        terms = super().loss(x)
        if self.n_calls == self.bad_call:
            if self.grad_only:  # value 0, gradient 0 * d sqrt(u)/du at u = 0 = 0 * inf = NaN
                mean = self.encode(x)[0]
                terms["loss"] = terms["loss"] + 0 * (mean - mean.detach()).sqrt().sum()
            else:
                terms["kl"] = terms["kl"] * float("nan")
                terms["loss"] = terms["recon"] + terms["kl"]
        self.n_calls += 1
        return terms


def test_nonfinite_loss_stops_and_keeps_last_checkpoint(tmp_path):
    path = tmp_path / "ckpt.pt"
    saved = {}

    def snapshot(trainer, epoch, record):
        saved[epoch] = path.read_bytes()

    model = make(NaNVAE, bad_call=5)  # 32 images / batch 16 = 2 steps per epoch: epoch 2, step 1
    trainer = Trainer(model, squares(32), epochs=4, batch_size=16, progress=False, checkpoint_path=path,
                      callbacks=[snapshot])
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    msg = str(err.value)
    assert isinstance(err.value, RuntimeError)
    assert "non-finite loss term(s) loss, kl at epoch 2 (0-based), step 1" in msg and "recon=nan" not in msg
    assert str(path) in msg and "after 2 epochs" in msg
    assert sorted(saved) == [0, 1]
    assert path.read_bytes() == saved[1]
    assert torch.load(path, weights_only=True)["epoch"] == 2

    path.unlink()  # without a checkpoint the message says so
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written"):
        Trainer(make(NaNVAE, bad_call=0), squares(32), epochs=1, batch_size=16, progress=False).fit()


def _ddp_worker(rank, world_size, tmp):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/pg", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
        model = RefitVAE(at=(1,))
        hist = Trainer(model, squares(30), epochs=2, batch_size=8, progress=True,
                       checkpoint_path=f"{tmp}/ckpt.pt").fit()
        torch.save({"state": model.state_dict(), "history": hist, "seen": model.seen,
                    "picked": model.picked, "refit_rows": [len(c) for c in model.calls]}, f"{tmp}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_two_ranks_gloo(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["state"].keys() == r1["state"].keys()
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])
    assert r0["refit_rows"] == r1["refit_rows"] == [30, 30]  # epoch 1 and the end, full set
    assert r0["picked"] == r1["picked"]  # same refit randomness on every rank
    assert r0["seen"] == r1["seen"] == 2 * 15  # each rank trains on its half
    assert strip(r0["history"]) == strip(r1["history"])  # losses are all-reduced
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert ckpt["epoch"] == 2
    assert all(torch.equal(ckpt["model"][k], r0["state"][k]) for k in ckpt["model"])


def test_nonfinite_gradient_stops_before_the_step():
    model = make(NaNVAE, bad_call=1, grad_only=True)
    trainer = Trainer(model, squares(32), epochs=2, batch_size=16, progress=False)
    with pytest.raises(NonFiniteLossError, match=r"gradient norm \(nan\) at epoch 0 \(0-based\), step 1"):
        trainer.fit()
    assert all(torch.isfinite(p).all() for p in model.parameters())
