"""`flow`: a small class-conditional latent flow-matching model (rectified flow) with a deterministic ODE sampler.

Two stages, as in latent diffusion, because pixel-space diffusion costs too much on a 2-core CPU:
1. an autoencoder (conv encoder -> a `latent_channels` x s x s map, s = 7 for 28x28; conv decoder -> sigmoid
   pixels), trained with squared error for the first `ae_fraction` of the steps;
2. a velocity network v(x_t, t, y) -- a residual MLP over the flattened, standardised latent, with the time and
   class embeddings modulating every block (adaptive LayerNorm) -- trained with the rectified-flow objective
   x_t = (1 - t) x0 + t x1, target x1 - x0, x0 ~ N(0, I) noise, x1 an encoded image, for the remaining steps.
   The class is dropped (replaced by a "null" class) with probability `p_uncond`, so one network gives both the
   conditional and the unconditional velocity for classifier-free guidance.

Optionally (`reflow_steps` > 0, off by default) a third stage straightens the flow and distils the guidance into
it, so one Euler step samples well (`FlowMatching._reflow`, `REFLOW_SAMPLER`).

Sampling integrates dx/dt = v from t = 0 (noise) to t = 1 with `sample_steps` steps of `solver` (`SOLVERS`:
euler, heun, midpoint, ab2 -- the two-step Adams-Bashforth method, second order from one evaluation per step),
then decodes. The integration is deterministic, so the
starting noise x0 *is* the latent code: `sample_latents` draws x0 ~ N(0, I), `decode(x0, labels)` runs the ODE,
and nearby x0 decode to nearby images -- the "views" of the multiview study. `guidance` w mixes the velocities as
v_uncond + w (v_cond - v_uncond): 1 is plain conditional sampling (one evaluation per step), above 1 sharpens
class identity at the cost of diversity.

    >>> gen = generators.create("flow", (1, 28, 28), 10, guidance=1.5)
    >>> gen.fit(train, steps=3000, seed=0)           # first 60% autoencoder, then the flow
    >>> x = gen.sample(torch.arange(10), rng=torch.Generator().manual_seed(0))

Cost (counted): with width 16 the autoencoder is ~21 M FLOPs per 28x28 image forward; the velocity MLP at hidden
384 with 3 blocks ~4 M FLOPs per evaluation (~3.3 M with the per-time modulation tables of `_velocity`), so a
sample at 4 Heun steps with guidance costs ~0.05 G FLOPs in the ODE, 8 evaluations of a doubled batch, plus the
decoder. Supported sizes: 8x8, 16x16, 28x28, 32x32.
"""
from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..progress import tqdm
from ..sources import ImageSetSource
from ..train import LossLog, check_positive
from .base import Generator, check_number, images_to_unit, size_plan

# ODE solvers and their velocity evaluations per step: Euler (first order, 1), Heun and midpoint (second order, 2),
# and ab2, the two-step Adams-Bashforth method (second order from one evaluation per step: it reuses the previous
# step's velocity, as DPM-Solver++(2M) does for diffusion; its first step is a Heun step, so n steps cost n + 1)
SOLVERS = ("euler", "heun", "midpoint", "ab2")

# The sampler issue 17 measured its "5x faster sampling" against: Heun with 8 steps and guidance, the default when
# the issue was filed (heun 4 became the default since: 2.2x, see the measurements in FlowMatching.__init__).
REFERENCE_SAMPLER = {"solver": "heun", "sample_steps": 8, "guidance": 1.5}

# The reflowed flow (see FlowMatching._reflow) and the sampler it is used with, measured on the quick flow (2,400
# steps on the pool, seed 0; 5,000 samples vs 5,000 validation images in the domain feature space; samples/s on the
# 2-core Xeon VM, 2 threads, every row in one run, 2026-11-26; scratch script in the issue-17 note):
#   teacher, heun 8 with guidance 1.5 (reference):   1,555/s  FID 4.24, precision 0.89, recall 0.43
#   teacher, heun 4 with guidance 1.5 (default):     2,592/s  FID 4.17, precision 0.88, recall 0.46
#   reflowed (4,000 steps, 50,000 pairs), euler 1:   9,158/s  FID 4.52, precision 0.88, recall 0.45   5.9x
#                                         euler 2:   7,675/s  FID 4.54;  euler 3: 6,433/s FID 4.51
#   reflowed (2,000 steps, 20,000 pairs), euler 1:  10,066/s  FID 4.65 (its own run: teacher heun 8 at 1,400/s)
# One Euler step is as good as two or three after reflow, within the ~0.4 FID a refit moves; against the teacher
# it gives up ~0.3 FID. Reflow costs ~130 s on those 2 cores (teacher pairs ~40 s, student ~90 s). Later runs on the
# same VM, 5,000 samples after a warm-up, steady: reference 1,250-1,310/s, reflowed 5,750-5,920/s (4.6x), the
# decoder then 82% of a reflowed sample's time; with the decoder's upsample + convolution pairs folded into
# transposed convolutions (`upsampled_conv`, same outputs) reference 1,306-1,382/s, default 2,356-2,453/s,
# reflowed 7,297-7,782/s (5.6x). Validation CAS (quick, scripts/flow_sampler_cas.py, seeds 0-2, classifier 2,500
# steps): reflowed euler 1 83.35% vs default heun 4 82.55%, +0.80 [-1.12, +2.72] pts paired, inconclusive at a
# ±1-pt margin: not lower, not shown equivalent.
REFLOW_SAMPLER = {"reflow_steps": 4000, "reflow_pairs": 50_000, "guidance": 1.0, "solver": "euler",
                  "sample_steps": 1}


def describe_sampler(settings: dict) -> str:
    """'heun 8, guidance 1.5' / 'euler 1, reflow 4000 steps on 50,000 pairs' for tables."""
    signature = inspect.signature(FlowMatching.__init__).parameters.values()
    defaults = {**{p.name: p.default for p in signature if p.default is not p.empty}, **settings}
    text = f"{defaults['solver']} {defaults['sample_steps']}"
    if defaults["reflow_steps"]:
        return text + f", reflow {defaults['reflow_steps']} steps on {defaults['reflow_pairs']:,} pairs"
    return text + f", guidance {defaults['guidance']:g}"


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


def upsampled_conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """conv(nearest 2x upsampling of x) for a 3x3, stride-1, padding-1 convolution, as one transposed convolution.

    An output pixel of the upsampled grid sees only 2 distinct input rows and 2 distinct columns (nearest
    upsampling repeats them), so the 3x3 kernel folds, per axis, into the 4 taps (w2, w1 + w2, w0 + w1, w0) of a
    stride-2 transposed convolution (kernel 4, padding 1): the same result up to float rounding for 16/36 of the
    multiply-adds, and no upsampled intermediate. Measured: the flow's decoder was 82% of a reflowed sample's time
    (69 of 84 ms per 500 images, 2-core Xeon VM)."""
    w = conv.weight                                                    # (out, in, 3, 3)
    folded = torch.stack([w[..., 2], w[..., 1] + w[..., 2], w[..., 0] + w[..., 1], w[..., 0]], -1)   # columns
    folded = torch.stack([folded[..., 2, :], folded[..., 1, :] + folded[..., 2, :],
                          folded[..., 0, :] + folded[..., 1, :], folded[..., 0, :]], -2)            # rows
    return F.conv_transpose2d(x, folded.transpose(0, 1), conv.bias, stride=2, padding=1)


def run_decoder(decoder: nn.Sequential, latent: torch.Tensor) -> torch.Tensor:
    """The autoencoder's decoder, each (nearest 2x upsampling, 3x3 convolution) pair run as `upsampled_conv`."""
    layers, x, i = list(decoder), latent, 0
    while i < len(layers):
        layer = layers[i]
        if (isinstance(layer, nn.Upsample) and layer.mode == "nearest" and layer.scale_factor in (2, 2.0)
                and i + 1 < len(layers) and isinstance(layers[i + 1], nn.Conv2d)
                and layers[i + 1].kernel_size == (3, 3) and layers[i + 1].stride == (1, 1)
                and layers[i + 1].padding == (1, 1)):
            x, i = upsampled_conv(x, layers[i + 1]), i + 2
        else:
            x, i = layer(x), i + 1
    return x


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

    def forward(self, h, modulation):
        scale, shift, gate = modulation.chunk(3, dim=1)
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

    def forward(self, x, t, y, tables=None):
        """v(x, t, y); with `tables` (from `modulation_tables(t)`) t is that time and y only indexes them."""
        if tables is None:
            cond = F.silu(self.time(time_embedding(t, self.cond_dim)) + self.label(y))
            modulations = [block.modulation(cond) for block in self.blocks]
        else:
            modulations = [table[y] for table in tables]
        h = self.inp(x)
        for block, modulation in zip(self.blocks, modulations):
            h = block(h, modulation)
        return self.out(self.out_norm(h))

    def modulation_tables(self, t: float, device) -> list[torch.Tensor]:
        """Each block's modulation for every class (and the null class) at time t: a sampler evaluates the network
        at one t for the whole batch, so it looks these (num_classes + 1) rows up instead of recomputing them per
        image (18% of an evaluation's multiply-adds at hidden 384)."""
        classes = torch.arange(self.label.num_embeddings, device=device)
        times = torch.full((len(classes),), t, device=device)
        cond = F.silu(self.time(time_embedding(times, self.cond_dim)) + self.label(classes))
        return [block.modulation(cond) for block in self.blocks]


# ---------------------------------------------------------------- the generator
def _optimise(params, n_steps: int, loss_fn, name: str, cfg: dict, device, bar, resume: dict | None = None,
              snapshot=None) -> list:
    """`n_steps` AdamW steps on `loss_fn()` at the configured lr, with a short linear warm-up then cosine decay to
    zero (stable from the first step at this lr); every stage of the fit (autoencoder, flow, reflow) trains so.
    Returns the logged loss curve. `resume`: a snapshot of this stage (optimizer, schedule, log, step) to continue
    from; `snapshot(step, opt, sched, log)` is offered the state after each step (it saves when due)."""
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.0)
    warm = max(1, n_steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * s / n_steps)))
    log = LossLog(cfg["log_every"], n_steps, device, f"lower lr={cfg['lr']}", terms=(name,),
                  what=f"flow {name} loss", bar=bar, postfix=(name,))
    first = 0
    if resume is not None:
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        log.load_state_dict(resume["log"])
        first = resume["step"]
        if bar is not None:
            bar.update(first)
    for step in range(first, n_steps):
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if bar is not None:
            bar.update(1)
        log.add(step, loss)
        if snapshot is not None:
            snapshot(step + 1, opt, sched, log)
    return log.points


class FlowMatching(Generator):
    family = "flow"
    sampling_options = ("guidance", "sample_steps", "solver")
    resumable = True            # paper's fits take 1.5-3 h on 2 cores: a killed one continues from its snapshot

    @classmethod
    def key_options(cls, config: dict) -> dict:
        """Reflow came after the study's records: with `reflow_steps` 0 every reflow_* option is left out of the
        keys (they do nothing then, and old keys stay valid); with reflow on, all of them are in."""
        if config.get("reflow_steps", 0):
            return dict(config)
        return {k: v for k, v in config.items() if not k.startswith("reflow_")}

    def __init__(self, image_shape, num_classes: int, width: int = 16, latent_channels: int = 4, hidden: int = 384,
                 blocks: int = 3, ae_fraction: float = 0.6, ae_batch_size: int = 64, batch_size: int = 256,
                 lr: float = 1e-3, p_uncond: float = 0.1, guidance: float = 1.5, sample_steps: int = 4,
                 solver: str = "heun", log_every: int = 50, reflow_steps: int = 0, reflow_pairs: int = 50_000,
                 reflow_guidance: float = 1.5, reflow_teacher_steps: int = 8):
        # ae_fraction default, re-checked on validation only (issue 14: it had been set citing test CAS):
        # scripts/flow_ae_fraction.py, quick flow (2,400 steps on the pool, seed 0), 5,000 samples vs 5,000
        # validation images in the domain feature space, 2-core Xeon VM, 2026-11-26:
        #   ae_fraction 0.4: FID 4.23, KID 0.121, precision 0.87, recall 0.38, density 0.77, coverage 0.54
        #   ae_fraction 0.6: FID 3.77, KID 0.114, precision 0.89, recall 0.44, density 0.81, coverage 0.58  <- default
        #   ae_fraction 0.8: FID 4.34, KID 0.153, precision 0.86, recall 0.47, density 0.71, coverage 0.53
        # One fit per value. The same 0.6 fit repeated on 2 threads instead of 1 (the quick run's generators
        # notebook) scored FID 4.17, so fit-to-fit noise is ~0.4 FID: the three settings are within about that of
        # each other, and validation gives no reason to move the default; 0.6 stays.
        # sampler default, measured (issue 17; quick flow, 2400 steps on the pool, 5,000 samples vs 5,000 validation
        # images in the domain feature space, same starting noise for every sampler; CPU-time samples/s, 1 thread,
        # Intel Xeon with other jobs running, each relative to the old code -- heun 8, NCHW decoder -- in one run):
        #   heun 8 (old):  FID 2.84, precision 0.92, recall 0.56, density 0.87, coverage 0.69    1.0x
        #   heun 4:        FID 2.74, precision 0.91, recall 0.57, density 0.83, coverage 0.68    2.2x  <- default
        #   heun 2:        FID 2.79, precision 0.87, recall 0.60, density 0.66, coverage 0.60    3.5x
        #   ab2 3:         FID 3.08, precision 0.93, recall 0.53, density 0.90, coverage 0.68    3.6x
        #   midpoint 2:    FID 3.25, precision 0.93, recall 0.55, density 0.89, coverage 0.67    3.7x
        #   euler 8 / 3:   FID 3.58 / 4.92; guidance 1.0 (heun 8): FID 5.84, so guidance stays on
        # heun 4 is the fastest setting that matched the old sampler on every score; ab2 3 and heun 2 trade
        # fidelity (FID, density) for speed. Part of the gain is the channels-last decoder (heun 8: 1.3x).
        # The best guidance falls as the flow trains longer (paper profile, validation CAS, 2-5 classifier seeds,
        # scripts/flow_sampler_cas.py on an H200 and the 2-core VM, results/paper/flow_samplers): at 32,000 steps
        # guidance 2 / 1.5 / 1.25 scored 85.7 / 88.0 / 88.5%; at 64,000 steps 1.5 / 1.25 / 1 scored 88.8 / 89.5 /
        # 89.9% (1 also halves the evaluations). The default stays 1.5, the value the committed runs used at their
        # 2,400 (quick) and 4,000 (paper) steps, where guidance 1 had the worse FID; a longer fit wants less
        # (paper's generators notebook sets guidance 1 with its 64,000-step flow: `zoo_overrides`).
        for name, value in (("width", width), ("latent_channels", latent_channels), ("hidden", hidden),
                            ("blocks", blocks), ("ae_batch_size", ae_batch_size), ("batch_size", batch_size),
                            ("sample_steps", sample_steps), ("log_every", log_every),
                            ("reflow_pairs", reflow_pairs), ("reflow_teacher_steps", reflow_teacher_steps)):
            check_positive(name, value)
        if not isinstance(reflow_steps, int) or isinstance(reflow_steps, bool) or reflow_steps < 0:
            raise ValueError(f"reflow_steps={reflow_steps!r}: allowed values are 0 (no reflow) or a positive "
                             f"number of student training steps")
        check_number("reflow_guidance", reflow_guidance, 0.0, math.inf, high_open=True)
        if reflow_steps and guidance != 1.0:
            raise ValueError(f"guidance={guidance!r} with reflow_steps={reflow_steps}: a reflowed model has the "
                             f"teacher's guidance (reflow_guidance={reflow_guidance!r}) in its weights and samples "
                             f"with one evaluation per step; allowed: guidance=1.0")
        if reflow_steps and reflow_guidance != 1.0 and p_uncond == 0.0:
            raise ValueError(f"reflow_guidance={reflow_guidance!r} needs an unconditional teacher: set p_uncond > 0 "
                             f"(or reflow_guidance=1.0)")
        check_number("ae_fraction", ae_fraction, 0.0, 1.0, low_open=True, high_open=True)
        check_number("lr", lr, 0.0, math.inf, low_open=True, high_open=True)
        check_number("p_uncond", p_uncond, 0.0, 1.0, high_open=True)
        check_number("guidance", guidance, 0.0, math.inf, high_open=True)
        if solver not in SOLVERS:
            raise ValueError(f"solver={solver!r} is unknown; allowed values: {', '.join(SOLVERS)}")
        if guidance != 1.0 and p_uncond == 0.0 and not reflow_steps:
            raise ValueError(f"guidance={guidance!r} needs an unconditional model: set p_uncond > 0 "
                             f"(or guidance=1.0)")
        super().__init__(image_shape, num_classes, dict(
            width=width, latent_channels=latent_channels, hidden=hidden, blocks=blocks, ae_fraction=ae_fraction,
            ae_batch_size=ae_batch_size, batch_size=batch_size, lr=lr, p_uncond=p_uncond, guidance=guidance,
            sample_steps=sample_steps, solver=solver, log_every=log_every, reflow_steps=reflow_steps,
            reflow_pairs=reflow_pairs, reflow_guidance=reflow_guidance, reflow_teacher_steps=reflow_teacher_steps))
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
    def _fit(self, train, steps, batch_size, device, rng, progress) -> dict:
        cfg = self.config
        ae_steps = max(1, int(round(cfg["ae_fraction"] * steps)))
        flow_steps = max(1, steps - ae_steps)
        source = ImageSetSource(train)
        history = {"ae_steps": ae_steps, "flow_steps": flow_steps}
        bar = tqdm(total=ae_steps + flow_steps + cfg["reflow_steps"], disable=not progress, desc="flow fit",
                   leave=False, mininterval=1.0)

        # A resumed fit (`self.checkpoint.state`) skips the stages its snapshot had finished (their weights are in
        # the snapshot, their curves in `finished`) and continues the one it was in. The autoencoder and flow
        # stages snapshot as they go; reflow does not (it draws its teacher pairs from `rng` before its loop, so it
        # restarts from the flow's end, whose snapshot is taken when the flow stage finishes).
        checkpoint = self.checkpoint
        state = checkpoint.state or {}
        finished = dict(state.get("finished", {}))
        if "source_queue" in state:
            source._queue = state["source_queue"].to(source._queue.device)

        def save(stage, step, opt=None, sched=None, log=None):
            checkpoint.save(stage=stage, step=step, finished=finished, source_queue=source._queue.cpu(),
                            optimizer=None if opt is None else opt.state_dict(),
                            scheduler=None if sched is None else sched.state_dict(),
                            log=None if log is None else log.state_dict())

        def loop(params, n_steps, loss_fn, name):
            if name in finished:
                bar.update(n_steps)
                return finished[name]
            resume = state if state.get("stage") == name and state.get("step") else None

            def snapshot(step, opt, sched, log):
                if name != "reflow" and checkpoint.due():
                    save(name, step, opt, sched, log)

            finished[name] = _optimise(params, n_steps, loss_fn, name, cfg, device, bar, resume, snapshot)
            if name == "flow" and cfg["reflow_steps"] and checkpoint.path is not None:
                save("reflow", 0)                        # reflow restarts from here
            return finished[name]

        self.train()

        def ae_loss():
            x = images_to_unit(source.next_batch(cfg["ae_batch_size"], rng)[0])
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
            idx = torch.randint(0, len(latents), (batch_size,), generator=rng).to(device)
            x1, y = latents[idx], labels[idx]
            x0 = torch.randn(x1.shape, generator=rng).to(device)
            # logit-normal times (Esser et al. 2024): more training where the velocity is hardest to predict
            t = torch.sigmoid(torch.randn(len(x1), generator=rng)).to(device)
            drop = (torch.rand(len(y), generator=rng) < cfg["p_uncond"]).to(device)
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
            xt = (1 - t[:, None]) * x0 + t[:, None] * x1
            return F.mse_loss(self.velocity(xt, t, y), x1 - x0)

        history["losses"] = loop(self.velocity.parameters(), flow_steps, flow_loss, "flow")
        if cfg["reflow_steps"]:
            history["reflow_losses"] = self._reflow(labels, batch_size, rng, loop)
        bar.close()
        self.eval()
        return history

    def _reflow(self, train_labels, batch_size, rng, loop) -> list:
        """Straighten the flow (rectified flow's "reflow", Liu et al. 2023), with the guidance distilled in.

        The trained network is the teacher: it carries `reflow_pairs` noise draws x0 to latents x1 with
        `reflow_teacher_steps` Heun steps at guidance `reflow_guidance` (labels drawn from the training labels, so
        the classes keep their frequencies). The same network, from its trained weights, then learns the constant
        velocity x1 - x0 on the straight line between each pair, with its label (no class dropout: the guided
        teacher is baked in), for `reflow_steps` steps at uniform t. Straight paths are integrated well by one or
        two Euler steps, and one evaluation per step replaces guidance's two: the sampling cost falls by the ratio
        of evaluations, 2 x 2 x sample_steps (Heun with guidance) over the student's steps."""
        cfg, device = self.config, self.latent_mean.device
        n = cfg["reflow_pairs"]
        pair_labels = train_labels[torch.randint(0, len(train_labels), (n,), generator=rng).to(train_labels.device)]
        x0 = torch.randn(n, self.latent_dim, generator=rng).to(device)
        self.velocity.eval()
        with torch.no_grad():
            x1 = torch.cat([self._integrate(x0[i:i + 4096], pair_labels[i:i + 4096], "heun",
                                            cfg["reflow_teacher_steps"], cfg["reflow_guidance"])
                            for i in range(0, n, 4096)])
        self.velocity.train()

        def reflow_loss():
            idx = torch.randint(0, n, (batch_size,), generator=rng).to(device)
            t = torch.rand(batch_size, generator=rng).to(device)
            xt = (1 - t[:, None]) * x0[idx] + t[:, None] * x1[idx]
            return F.mse_loss(self.velocity(xt, t, pair_labels[idx]), x1[idx] - x0[idx])

        return loop(self.velocity.parameters(), cfg["reflow_steps"], reflow_loss, "reflow")

    @torch.no_grad()
    def _encode_all(self, train, batch_size: int = 1024):
        latents = [self.autoencoder.encoder(images_to_unit(train.images[i:i + batch_size]))
                   for i in range(0, len(train), batch_size)]
        return torch.cat(latents), train.labels

    def _standardise(self, latents):
        return (latents - self.latent_mean[None, :, None, None]) / self.latent_std[None, :, None, None]

    # ------------------------------------------------------------ sampling
    def sample_latents(self, labels, rng=None) -> torch.Tensor:
        labels = self.check_labels(labels)
        return torch.randn(len(labels), self.latent_dim, generator=rng)

    def _velocity(self, x, t, labels, w):
        tables = self.velocity.modulation_tables(t, x.device)
        if w == 1.0:
            return self.velocity(x, t, labels, tables)
        null = torch.full_like(labels, self.num_classes)
        v_cond, v_uncond = self.velocity(torch.cat([x, x]), t, torch.cat([labels, null]), tables).chunk(2)
        return v_uncond + w * (v_cond - v_uncond)

    def _integrate(self, x, labels, solver=None, n=None, w=None):
        """Integrate dx/dt = v(x, t, y) from t = 0 to 1 on a uniform grid of `n` steps of `solver` at guidance w
        (default: the configured sampler)."""
        cfg = self.config
        solver, n, w = solver or cfg["solver"], n or cfg["sample_steps"], cfg["guidance"] if w is None else w
        dt = 1.0 / n
        previous = None                      # ab2: the velocity at the previous grid point
        for i in range(n):
            t = i * dt
            v = self._velocity(x, t, labels, w)
            if solver == "euler":
                x = x + dt * v
            elif solver == "midpoint":
                x = x + dt * self._velocity(x + 0.5 * dt * v, t + 0.5 * dt, labels, w)
            elif solver == "heun" or previous is None:          # heun, and ab2's first step
                x = x + dt * 0.5 * (v + self._velocity(x + dt * v, t + dt, labels, w))
            else:                                               # ab2 on a uniform grid
                x = x + dt * (1.5 * v - 0.5 * previous)
            previous = v
        return x

    def function_evaluations(self) -> int:
        """Velocity-network forwards per sample (x2 in batch size when guidance != 1): the sampling cost."""
        n, solver = self.config["sample_steps"], self.config["solver"]
        return {"euler": n, "heun": 2 * n, "midpoint": 2 * n, "ab2": n + 1}[solver]

    def evaluations_per_sample(self) -> int:
        """Velocity-network evaluations per image, guidance's doubled batch included: what sampling costs besides
        the decoder (heun 8 with guidance: 32; heun 4 with guidance: 16; a reflowed model's one Euler step: 1)."""
        return self.function_evaluations() * (2 if self.config["guidance"] != 1.0 else 1)

    def _decode(self, z, labels):
        self.eval()
        x = self._integrate(z, labels)
        latent = x.view(len(x), *self.latent_shape) * self.latent_std[None, :, None, None] \
            + self.latent_mean[None, :, None, None]
        # channels-last input: oneDNN's convolutions ran the decoder 3.2x faster (355 -> 111 ms per 500 images, 1
        # thread, measured before the upsample + conv pairs became transposed convolutions, which kept it faster:
        # 48 vs 74 ms NCHW per 500 images, 2 threads)
        pixels = run_decoder(self.autoencoder.decoder, latent.contiguous(memory_format=torch.channels_last))
        return torch.sigmoid(pixels).contiguous()
