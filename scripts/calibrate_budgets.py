"""Budget calibration sweep: validation accuracy of the real arm vs training steps at each N, and of SimCLR on real
pixel views vs encoder steps. It is the evidence behind the profiles' `epochs` / `min_steps` / `max_steps` and
`mv_steps` (see configs/*.yaml). Run once on a lent GPU (minutes) or on a CPU (hours):

    python scripts/calibrate_budgets.py --out calib.csv [--device cuda]

Scores both validation and test; the profiles were chosen from the validation column only.
"""
from __future__ import annotations

import argparse
import csv
import time

from synthstudy import contrastive as C
from synthstudy import data, models, sources, train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--sizes", default="100,1000,3000,10000,all")
    ap.add_argument("--steps", default="250,500,1000,2000,4000")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--mv-steps", default="0,300,600,1200,2400")
    ap.add_argument("--skip-classifier", action="store_true")
    a = ap.parse_args()
    splits = data.load("fashion_mnist")
    pool, val = data.holdout(splits.train, 5000, seed=0)
    seeds = [int(s) for s in a.seeds.split(",")]
    rows = []
    fields = ["kind", "n", "steps", "seed", "tta", "val_accuracy", "test_accuracy", "seconds", "device"]
    out = open(a.out, "w", newline="")
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()

    def emit(row):
        rows.append(row)
        writer.writerow(row)
        out.flush()
        print(row, flush=True)

    dev = str(train.resolve_device(a.device))
    if not a.skip_classifier:
        for steps in [int(s) for s in a.steps.split(",")]:
            for n_text in a.sizes.split(","):
                n = len(pool) if n_text == "all" else int(n_text)
                for seed in seeds:
                    idx = data.stratified_indices(pool.labels.numpy(), n, seed=seed)
                    net = models.create_model("cnn", 1, 10, 28, seed=seed)
                    cfg = train.TrainConfig(steps=steps, batch_size=128, lr=0.1, augment="flip_crop", tta="flip",
                                            seed=seed, device=a.device, progress=False)
                    t0 = time.perf_counter()
                    result = train.fit(net, sources.ImageSetSource(pool.take(idx)), cfg)
                    secs = time.perf_counter() - t0
                    for tta in ("flip", "flip_shift"):
                        ecfg = train.TrainConfig(steps=steps, augment="flip_crop", tta=tta, device=a.device)
                        emit({"kind": "classifier", "n": n, "steps": steps, "seed": seed, "tta": tta,
                              "val_accuracy": train.evaluate(result.model, val, ecfg)["accuracy"],
                              "test_accuracy": train.evaluate(result.model, splits.test, ecfg)["accuracy"],
                              "seconds": secs, "device": dev})
    augment = C.PixelAugment.for_dataset("fashion_mnist", image_size=28)
    probe_set = pool.take(data.stratified_indices(pool.labels.numpy(), 5000, seed=0))
    for steps in [int(s) for s in a.mv_steps.split(",")]:
        for seed in seeds:
            enc = C.create_encoder("cnn", in_channels=1, image_size=28, seed=seed)
            t0 = time.perf_counter()
            if steps:
                views = C.make_views("pixel", real=pool, augment=augment)
                cfg = C.ContrastiveConfig(method="simclr", steps=steps, batch_size=128, lr=0.1, temperature=0.2,
                                          seed=seed, device=a.device, progress=False)
                enc = C.fit(enc, views, cfg).encoder
            secs = time.perf_counter() - t0
            scores, _ = C.evaluate(enc, fit_set=probe_set, score_sets={"val": val, "test": splits.test})
            emit({"kind": "simclr_real", "n": len(pool), "steps": steps, "seed": seed, "tta": "none",
                  "val_accuracy": scores["probe_accuracy_val"], "test_accuracy": scores["probe_accuracy_test"],
                  "seconds": secs, "device": dev})
    out.close()


if __name__ == "__main__":
    main()
