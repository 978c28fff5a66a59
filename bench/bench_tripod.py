"""The TRIPOD setting, step by step: does act training carry synopsis labels to shots?

Training movies have turning-point labels on their synopsis *sentences* only (TRIPOD); the
validation and test movies have shot gold, for choosing the epoch and for scoring. MEGA's act
mechanism has three links (supp. Sec. 4-5), each measured here on held-out movies:

1. **synopsis model** — does it find the TP sentences? (top-1 accuracy of its per-TP softmax
   over sentences against the gold sentence; chance = 1 / #sentences);
2. **synchronisation** — in the space the E-step and Eq. 5 use, is a gold TP shot closest to
   its TP sentence? (top-1 shot→sentence accuracy at the gold shots; chance = 1 / #sentences);
3. **teacher** — the distribution P of Eq. 6 built from the gold sentence labels (what the
   distillation trains towards): its TA/PA/D against the shot gold;
4. **student** — the trained shot model alone: TA/PA/D; and **predicted** — what ``eval`` and
   ``segment`` give: the same unless the config has ``synopsis_guidance`` (then the student
   times the synopsis guide of ``predict.synopsis_guide``, built from the movie's synopsis and
   the synopsis model's *predicted* TP sentences, no label).

Beside them, on the same test movies: the TRIPOD position prior (by shot index), and a
parameter-free context-change score (the distance between the mean features of the K shots
before and after a shot, ``context_change``) multiplied into the prior, K and its weight chosen
on the validation movies. Every number is mean ± std over the seeds; seed s generates data set
s (``manifest synth --tripod-setting --variant V --seed s``) and trains with seed s.

    python bench/bench_tripod.py --variant context --movies 60 --seeds 0,1,2,3,4 \\
        --config act-sync [--epochs 20] [--set dropout=0.1] [--synth tp_jitter=0.1] [--out DIR]

``--synth KEY=JSON`` changes a knob of the generator (``manifests.synth.SynthParams``: noise,
TP position jitter, sentences per synopsis, scenes per movie, ...), for sets shaped unlike the
default ones.

Without ``--epochs`` each config trains its packaged ``train.epochs``, as ``mega-pipe train``
does.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from mega_pipe.extractors.registry import model_set_dims
from mega_pipe.manifests.schema import read_manifest
from mega_pipe.manifests.synth import SynthParams, generate
from mega_pipe.model.checkpoint import load_checkpoint
from mega_pipe.model.config import config_to_dict, load_config
from mega_pipe.model.data import load_entries, pack_synopses, pack_windows
from mega_pipe.model.losses import teacher_log_distribution
from mega_pipe.model.metrics import act_metrics
from mega_pipe.model.predict import act_posteriors, sync_embeddings
from mega_pipe.model.prior import tp_prior_by_index
from mega_pipe.model.train import TrainOptions, train

KS = (4, 8, 16, 32)
WEIGHTS = (0.5, 1.0, 2.0, 4.0, 8.0)


def context_change(x: np.ndarray, k: int) -> np.ndarray:
    """Per shot i: ‖mean(x[i−k:i]) − mean(x[i:i+k])‖ (windows clipped at the movie's ends),
    standardised over the movie."""
    c = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    n = len(x)
    i = np.arange(n)
    lo, hi = np.maximum(i - k, 0), np.minimum(i + k, n)
    before = (c[i] - c[lo]) / np.maximum(i - lo, 1)[:, None]
    after = (c[hi] - c[i]) / np.maximum(hi - i, 1)[:, None]
    d = np.linalg.norm(after - before, axis=1)
    d[0] = d[1:].min(initial=0.0)
    return (d - d.mean()) / (d.std() + 1e-9)


def features(movie) -> np.ndarray:
    x = np.concatenate([movie.features[m] for m in sorted(movie.features)], axis=1)
    return (x - x.mean(0)) / (x.std(0) + 1e-6)


def change_records(movies, k: int, weight: float) -> list[dict]:
    out = []
    for m in movies:
        logp = np.log(tp_prior_by_index(len(m.shot_frames)) + 1e-12) + weight * context_change(features(m), k)
        p = np.exp(logp - logp.max(axis=1, keepdims=True))
        out.append({"movie_id": m.movie_id, "posteriors": (p / p.sum(1, keepdims=True)).tolist(),
                    "gold": m.tp_shots})
    return out


def baselines(val, test) -> dict:
    prior = [{"movie_id": m.movie_id, "posteriors": tp_prior_by_index(len(m.shot_frames)).tolist(),
              "gold": m.tp_shots} for m in test]
    best = max(((k, w) for k in KS for w in WEIGHTS),
               key=lambda kw: act_metrics(change_records(val, *kw))["ta"])
    return {"prior": act_metrics(prior), "change": act_metrics(change_records(test, *best)),
            "change_choice": {"k": best[0], "weight": best[1]}}


@torch.no_grad()
def diagnose(ckpt, movies) -> dict:
    """Links 1-3 of the module docstring on ``movies`` (normalised with the checkpoint's stats)."""
    model, syn, cfg, dev = ckpt.model, ckpt.synopsis_model, ckpt.cfg, ckpt.device
    kd = cfg.train.distill
    syn_hits, sync_hits, chance, teacher = [], [], [], []
    for m in movies:
        batch = pack_windows([m], list(model.modalities), cfg.max_len, dev)
        sents, mask = pack_synopses([m], dev)
        sent_logits, fused_sent = syn(sents, mask)
        n_sent = len(m.synopsis)
        post = torch.softmax(sent_logits[0, :n_sent].float(), dim=0)          # (L_syn, 5)
        syn_hits += [int(post[:, n].argmax()) in g for n, g in enumerate(m.tp_sentences)]
        out = model(batch.feats, batch.mask, batch.positions, batch.present)
        (u,), v = sync_embeddings(model, syn, batch, batch.present, out, sents, fused_sent)
        v = v[0, :n_sent].float()
        sim = torch.nn.functional.normalize(u, dim=-1) @ torch.nn.functional.normalize(v, dim=-1).T
        for n, g in enumerate(m.tp_shots):
            sync_hits += [int(sim[i].argmax()) in m.tp_sentences[n] for i in g]
        chance.append(1.0 / n_sent)
        q = torch.zeros(n_sent, 5, device=dev)
        for n, g in enumerate(m.tp_sentences):
            q[g, n] = 1.0 / len(g)
        logp = teacher_log_distribution(u, v, q, tau=kd.tau, cosine=kd.cosine, teacher_tau=kd.teacher_tau)
        teacher.append({"movie_id": m.movie_id, "posteriors": logp.exp().T.cpu().tolist(), "gold": m.tp_shots})
    return {"synopsis_top1": float(np.mean(syn_hits)), "sync_top1_at_gold": float(np.mean(sync_hits)),
            "chance": float(np.mean(chance)), "teacher": act_metrics(teacher)}


def run_seed(work: Path, seed: int, args) -> dict:
    manifest = work / f"data{seed}" / "manifest.jsonl"
    if not manifest.is_file():
        generate(manifest.parent, args.movies, seed=seed, modalities=model_set_dims("tiny"),
                 params=synth_params(args.synth), variant=args.variant,
                 tripod_setting=not args.shot_gold)
    entries = read_manifest(manifest)
    t0 = time.perf_counter()
    run = work / f"run{seed}"                # an interrupted or finished run is resumed
    overrides = config_overrides(args.config, args.set)
    opts = TrainOptions(device="cpu", seed=seed, config=args.config, epochs=args.epochs,
                        progress=False, resume=(run / "last.pt").is_file(),
                        config_overrides=overrides or None)
    summary = train("act", manifest, run, opts)
    ckpt = load_checkpoint(summary["best_checkpoint"])
    split = {s: [ckpt.normalizer.apply(m) for m in load_entries(
                 [e for e in entries if e.split == s], ckpt.modalities, synopsis=True)]
             for s in ("val", "test")}
    def scored(synopsis_model, movies=split["test"]):
        posteriors = act_posteriors(ckpt.model, movies, ckpt.modalities, ckpt.device, synopsis_model)
        return act_metrics([{"movie_id": m.movie_id, "posteriors": p.tolist(), "gold": m.tp_shots}
                            for m, p in zip(movies, posteriors)])
    return {"seed": seed, "best_epoch": summary["best_epoch"], "train_s": time.perf_counter() - t0,
            "student": scored(None), "predicted": scored(ckpt.synopsis_model),
            "val_student": scored(None, split["val"]), "val_predicted": scored(ckpt.synopsis_model, split["val"]),
            "val": diagnose(ckpt, split["val"]), "test_diag": diagnose(ckpt, split["test"]), **baselines(split["val"], split["test"])}


def synth_params(items: list[str]) -> SynthParams:
    """``KEY=JSON`` items as generator knobs (``SynthParams`` fields; a list becomes a range)."""
    values = {}
    for item in items:
        key, value = item.split("=", 1)
        if key not in SynthParams.__dataclass_fields__:
            raise SystemExit(f"--synth: unknown generator knob {key!r}")
        value = json.loads(value)
        values[key] = tuple(value) if isinstance(value, list) else value
    return SynthParams(**values)


def config_overrides(config: str, items: list[str]) -> dict:
    """``KEY=JSON`` items as ``TrainOptions.config_overrides`` (whole top-level fields): a dotted
    key (``train.distill.start_epoch=10``) changes one value inside the packaged config's field."""
    base = config_to_dict(load_config(config))
    out: dict = {}
    for item in items:
        key, value = item.split("=", 1)
        top, *rest = key.split(".")
        if not rest:
            out[top] = json.loads(value)
            continue
        field = out.setdefault(top, json.loads(json.dumps(base[top])))
        for part in rest[:-1]:
            field = field[part]
        field[rest[-1]] = json.loads(value)
    return out


def mean_std(values) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", default="context")
    ap.add_argument("--movies", type=int, default=60)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--config", default="act-small")
    ap.add_argument("--epochs", type=int, help="default: the config's train.epochs")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="override a config value, e.g. dropout=0.1 or train.lr=0.005 "
                    "(repeatable)")
    ap.add_argument("--synth", action="append", default=[], metavar="KEY=JSON",
                    help="a generator knob of the planted set (manifests/synth.py SynthParams), e.g. "
                    "tp_jitter=0.1 or sentences=[8,15] (repeatable)")
    ap.add_argument("--shot-gold", action="store_true",
                    help="the training movies keep their shot gold (an upper bound: not the TRIPOD setting)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="mega-tripod-"))
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        runs.append(run_seed(work, seed, args))
        (work / f"result{seed}.json").write_text(json.dumps(runs[-1], indent=2))
    rows = {
        "TRIPOD prior (test TA)": [r["prior"]["ta"] for r in runs],
        "prior x context change (test TA)": [r["change"]["ta"] for r in runs],
        "student = the shot model alone (test TA)": [r["student"]["ta"] for r in runs],
        "  the shot model's test D": [r["student"]["d"] for r in runs],
        "predicted = what eval/segment give (test TA)": [r["predicted"]["ta"] for r in runs],
        "  the prediction's test D": [r["predicted"]["d"] for r in runs],
        "  best epoch": [r["best_epoch"] for r in runs],
        "1. synopsis top-1 at TP sentences (test)": [r["test_diag"]["synopsis_top1"] for r in runs],
        "2. sync top-1 shot->sentence at gold shots (test)": [r["test_diag"]["sync_top1_at_gold"] for r in runs],
        "   chance (1/#sentences)": [r["test_diag"]["chance"] for r in runs],
        "3. teacher P (Eq. 6, gold q) test TA": [r["test_diag"]["teacher"]["ta"] for r in runs],
    }
    print(f"variant {args.variant} {args.synth}, {args.movies} movies, config {args.config} {args.set}, {args.epochs or 'packaged'} epochs, "
          f"seeds {args.seeds} (work: {work})")
    for name, values in rows.items():
        print(f"{name:52s} {mean_std(values)}   {[round(float(v), 3) for v in values]}")


if __name__ == "__main__":
    main()
