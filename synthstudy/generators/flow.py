"""`flow`: a small class-conditional latent flow-matching model (rectified flow) with a deterministic ODE sampler.

Two stages, as in latent diffusion, because pixel-space diffusion costs too much on a 2-core CPU:
1. an autoencoder (conv encoder -> a `latent_channels` x s x s map, s = 7 for 28x28; conv decoder -> sigmoid
   pixels), trained with squared error for the first `ae_fraction` of the steps;
2. a velocity network v(x_t, t, y) -- a residual MLP over the flattened, standardised latent, with the time and
   class embeddings modulating every block (adaptive LayerNorm) -- trained with the rectified-flow objective
   x_t = (1 - t) x0 + t x1, target x1 - x0, x0 ~ N(0, I) noise, x1 an encoded image, for the remaining steps.
   The class is dropped (replaced by a "null" class) with probability `p_uncond`, so one network gives both the
   conditional and the unconditional velocity for classifier-free guidance.

Sampling integrates dx/dt = v from t = 0 (noise) to t = 1 with `sample_steps` Heun steps (`solver="heun"`, two
evaluations per step, second order) or Euler steps, then decodes. The integration is deterministic, so the
starting noise x0 *is* the latent code: `sample_latents` draws x0 ~ N(0, I), `decode(x0, labels)` runs the ODE,
and nearby x0 decode to nearby images -- the "views" of the multiview study. `guidance` w mixes the velocities as
v_uncond + w (v_cond - v_uncond): 1 is plain conditional sampling (one evaluation per step), above 1 sharpens
class identity at the cost of diversity.

    >>> gen = generators.create("flow", (1, 28, 28), 10, guidance=1.5)
    >>> gen.fit(train, steps=3000, seed=0)           # first 60% autoencoder, then the flow
    >>> x = gen.sample(torch.arange(10), generator=torch.Generator().manual_seed(0))

Cost (counted): with width 16 the autoencoder is ~21 M FLOPs per 28x28 image forward; the velocity MLP at hidden
384 with 3 blocks ~4 M FLOPs per evaluation, so a sample at 16 Heun steps with guidance costs ~0.25 G FLOPs,
dominated by the ODE. Supported sizes: 8x8, 16x16, 28x28, 32x32.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from ..progress import tqdm

from ..sources import ImageSetSource
from ..train import check_positive
from .base import Generator, check_number, images_to_unit, size_plan

SOLVERS = ("euler", "heun")


# ---------------------------------------------------------------- stage 1: autoencoder
class _AutoEncoder(nn.Module):
    def __init__(self, channels: int, width: int, n_down: int, latent_channels: int):
        super().__init__()
        enc, c = [nn.Conv2d(channels, width, 3, padding=1), nn.SiLU()], width
        for _ in range(n_down):
            enc += [nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.SiLU()]
            c *= 2
        enc.append(nn.Conv2d(c, latent_channels, 1))
        self.encoder = nn.Sequential(*enc)
        dec = [nn.Conv2d(latent_channels, c, 3, padding=1), nn.SiLU()]
        for _ in range(n_down):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c // 2, 3, padding=1), nn.SiLU()]
            c //= 2
        dec.append(nn.Conv2d(c, channels, 3, padding=1))
        self.decoder = nn.Sequential(*dec)

    def forward(self, x):
        return self.decoder(self.encoder(x))     # logits


# ---------------------------------------------------------------- stage 2: velocity network
def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of t in [0, 1] (frequencies 1 .. 1000, as in diffusion models)."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device) / half)
    angles = t[:, None] * 1000.0 * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class _Block(nn.Module):
    """Pre-norm residual MLP block; the condition sets the LayerNorm's scale and shift and a residual gate."""

    def __init__(self, hidden: int, cond_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.SiLU(), nn.Linear(2 * hidden, hidden))
        self.modulation = nn.Linear(cond_dim, 3 * hidden)
        nn.init.zeros_(self.modulation.weight)     # start as identity blocks (adaLN-zero, as in DiT)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, h, cond):
        scale, shift, gate = self.modulation(cond).chunk(3, dim=1)
        return h + gate * self.mlp(self.norm(h) * (1 + scale) + shift)


class _Velocity(nn.Module):
    def __init__(self, dim: int, num_classes: int, hidden: int, blocks: int, cond_dim: int = 128):
        super().__init__()
        self.cond_dim = cond_dim
        self.time = nn.Sequential(nn.Linear(cond_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))
        self.label = nn.Embedding(num_classes + 1, cond_dim)          # last index: the "null" class (no label)
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(_Block(hidden, cond_dim) for _ in range(blocks))
        self.out_norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, dim)

    def forward(self, x, t, y):
        cond = F.silu(self.time(time_embedding(t, self.cond_dim)) + self.label(y))
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, cond)
        return self.out(self.out_norm(h))


# ---------------------------------------------------------------- the generator
class FlowMatching(Generator):
    family = "flow"

    def __init__(self, image_shape, num_classes: int, width: int = 16, latent_channels: int = 4, hidden: int = 384,
                 blocks: int = 3, ae_fraction: float = 0.6, ae_batch_size: int = 64, batch_size: int = 256,
                 lr: float = 1e-3, p_uncond: float = 0.1, guidance: float = 1.5, sample_steps: int = 8,
                 solver: str = "heun", log_every: int = 50):
        for name, value in (("width", width), ("latent_channels", latent_channels), ("hidden", hidden),
                            ("blocks", blocks), ("ae_batch_size", ae_batch_size), ("batch_size", batch_size),
                            ("sample_steps", sample_steps), ("log_every", log_every)):
            check_positive(name, value)
        check_number("ae_fraction", ae_fraction, 0.0, 1.0, low_open=True, high_open=True)
        check_number("lr", lr, 0.0, math.inf, low_open=True, high_open=True)
        check_number("p_uncond", p_uncond, 0.0, 1.0, high_open=True)
        check_number("guidance", guidance, 0.0, math.inf, high_open=True)
        if solver not in SOLVERS:
            raise ValueError(f"solver={solver!r} is unknown; allowed values: {', '.join(SOLVERS)}")
        if guidance != 1.0 and p_uncond == 0.0:
            raise ValueError(f"guidance={guidance!r} needs an unconditional model: set p_uncond > 0 "
                             f"(or guidance=1.0)")
        super().__init__(image_shape, num_classes, dict(
            width=width, latent_channels=latent_channels, hidden=hidden, blocks=blocks, ae_fraction=ae_fraction,
            ae_batch_size=ae_batch_size, batch_size=batch_size, lr=lr, p_uncond=p_uncond, guidance=guidance,
            sample_steps=sample_steps, solver=solver, log_every=log_every))
        start, self.n_down = size_plan(self.image_shape)
        self.latent_shape = (latent_channels, start, start)
        self.latent_dim = latent_channels * start * start
        self._build()

    def _build(self) -> None:
        cfg = self.config
        self.autoencoder = _AutoEncoder(self.image_shape[0], cfg["width"], self.n_down, cfg["latent_channels"])
        self.velocity = _Velocity(self.latent_dim, self.num_classes, cfg["hidden"], cfg["blocks"])
        # per-channel statistics of the encoded training set: the flow works on standardised latents
        self.register_buffer("latent_mean", torch.zeros(cfg["latent_channels"]))
        self.register_buffer("latent_std", torch.ones(cfg["latent_channels"]))

    def sampling_state_dict(self) -> dict:
        keep = ("autoencoder.decoder.", "velocity.", "latent_mean", "latent_std")
        return {k: v for k, v in self.state_dict().items() if k.startswith(keep)}

    # ------------------------------------------------------------ training
    def _fit(self, train, steps, batch_size, device, gen, progress) -> dict:
        cfg = self.config
        ae_steps = max(1, int(round(cfg["ae_fraction"] * steps)))
        flow_steps = max(1, steps - ae_steps)
        source = ImageSetSource(train)
        history = {"ae_steps": ae_steps, "flow_steps": flow_steps}
        bar = tqdm(total=ae_steps + flow_steps, disable=not progress, desc="flow fit", leave=False, mininterval=1.0)

        def loop(params, n_steps, loss_fn, name):
            opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.0)
            # short linear warm-up, then cosine decay to zero: stable from the first step at this lr
            warm = max(1, n_steps // 20)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * s / n_steps)))
            log, running, count = [], torch.zeros((), device=device), 0
            for step in range(n_steps):
                loss = loss_fn()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                running += loss.detach()
                count += 1
                bar.update(1)
                if count == cfg["log_every"] or step == n_steps - 1:
                    mean = float(running) / count
                    if not math.isfinite(mean):
                        raise FloatingPointError(f"flow {name} loss became {mean} at step {step + 1}; "
                                                 f"lower lr={cfg['lr']}")
                    log.append((step + 1, mean))
                    bar.set_postfix({name: f"{mean:.4f}"})
                    running.zero_()
                    count = 0
            return log

        self.train()

        def ae_loss():
            x = images_to_unit(source.next_batch(cfg["ae_batch_size"], gen)[0])
            return F.mse_loss(torch.sigmoid(self.autoencoder(x)), x)

        history["ae_losses"] = loop(self.autoencoder.parameters(), ae_steps, ae_loss, "ae")
        self.autoencoder.eval().requires_grad_(False)
        latents, labels = self._encode_all(train)
        stats_dims = (0, 2, 3)
        self.latent_mean.copy_(latents.mean(stats_dims))
        self.latent_std.copy_(latents.std(stats_dims).clamp_min(1e-4))
        latents = self._standardise(latents).flatten(1)
        self.autoencoder.requires_grad_(True)

        def flow_loss():
            idx = torch.randint(0, len(latents), (batch_size,), generator=gen).to(device)
            x1, y = latents[idx], labels[idx]
            x0 = torch.randn(x1.shape, generator=gen).to(device)
            # logit-normal times (Esser et al. 2024): more training where the velocity is hardest to predict
            t = torch.sigmoid(torch.randn(len(x1), generator=gen)).to(device)
            drop = (torch.rand(len(y), generator=gen) < cfg["p_uncond"]).to(device)
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
            xt = (1 - t[:, None]) * x0 + t[:, None] * x1
            return F.mse_loss(self.velocity(xt, t, y), x1 - x0)

        history["losses"] = loop(self.velocity.parameters(), flow_steps, flow_loss, "flow")
        bar.close()
        self.eval()
        return history

    @torch.no_grad()
    def _encode_all(self, train, batch_size: int = 1024):
        latents = [self.autoencoder.encoder(images_to_unit(train.images[i:i + batch_size]))
                   for i in range(0, len(train), batch_size)]
        return torch.cat(latents), train.labels

    def _standardise(self, latents):
        return (latents - self.latent_mean[None, :, None, None]) / self.latent_std[None, :, None, None]

    # ------------------------------------------------------------ sampling
    def sample_latents(self, labels, generator=None) -> torch.Tensor:
        labels = self.check_labels(labels)
        return torch.randn(len(labels), self.latent_dim, generator=generator)

    def _velocity(self, x, t, labels):
        w = self.config["guidance"]
        tt = torch.full((len(x),), t, device=x.device)
        if w == 1.0:
            return self.velocity(x, tt, labels)
        null = torch.full_like(labels, self.num_classes)
        v_cond, v_uncond = self.velocity(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([labels, null])).chunk(2)
        return v_uncond + w * (v_cond - v_uncond)

    def _decode(self, z, labels):
        self.eval()
        n, x = self.config["sample_steps"], z
        dt = 1.0 / n
        for i in range(n):
            t = i * dt
            v = self._velocity(x, t, labels)
            if self.config["solver"] == "heun":
                x_euler = x + dt * v
                x = x + dt * 0.5 * (v + self._velocity(x_euler, t + dt, labels))
            else:
                x = x + dt * v
        latent = x.view(len(x), *self.latent_shape) * self.latent_std[None, :, None, None] \
            + self.latent_mean[None, :, None, None]
        return torch.sigmoid(self.autoencoder.decoder(latent))
