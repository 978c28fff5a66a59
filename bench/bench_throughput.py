"""Training throughput of the paper-size configs beside the paper's (issue 10 part 8).

MEGA reports 1736.13 training samples/s for scene (Tab. 2g, 67.57M parameters) and 18.24 for
act (Tab. 2h, 6.78M). This bench generates a synthetic set with the paper's feature
dimensions — scene: bassl 2048, place 2048, clip 512 (the 67.39M row of docs/model.md); act:
the paper-plausible Set2 (appr, action, place, audio 2048, clip and subtitle 768, synopsis
sentences 768: the 6.77M row), movies of feature-film length (``--act-scenes``, ~2 shots a
scene) — and trains the packaged ``scene`` / ``act`` configs through the public trainer
(bf16 autocast on CUDA, fp32 on CPU). It prints the trainer's own samples/s of the last epoch
(scene: 17-shot windows; act: movies, as the paper counts them), the ratio to the paper's
figure, the parameter count (``model_summary``) and, on CUDA, the peak allocated memory. One run, one machine:
the ratios are what to compare, not pass/fail numbers. Usage::

    python bench/bench_throughput.py --device cuda [--tasks scene,act] [--movies 24] [--epochs 2]
    python bench/bench_throughput.py --device cpu --movies 5 --epochs 1 --scene-batch 16 --act-scenes 60,80
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from mega_pipe.manifests.synth import SynthParams, generate
from mega_pipe.model.summary import model_summary
from mega_pipe.model.train import TrainOptions, train

PAPER = {"scene": 1736.13, "act": 18.24}   # samples/s, MEGA supp. Tab. 2g / 2h
DIMS = {"scene": {"bassl": 2048, "place": 2048, "clip": 512},
        "act": {"appr": 2048, "clip": 768, "action": 2048, "place": 2048, "audio": 2048, "subtitle": 768}}


def measure(task: str, work: Path, args) -> dict:
    scenes = tuple(int(x) for x in args.act_scenes.split(",")) if task == "act" else (40, 80)
    params = SynthParams(scenes=scenes, sentence_dim=768)
    manifest = generate(work / f"synth_{task}", args.movies, seed=0, modalities=DIMS[task], params=params,
                        overwrite=True)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    summary = train(task, manifest, work / f"run_{task}", TrainOptions(
        epochs=args.epochs, device=args.device, config=task,
        batch_size=args.scene_batch if task == "scene" else None, progress=args.progress))
    last = json.loads(Path(summary["metrics_log"]).read_text().splitlines()[-1])
    size = model_summary(task, DIMS[task], sentence_dim=768)["parameters"]
    return {"task": task, "device": args.device, "samples_per_s": round(last["samples_per_s"], 2),
            "paper_samples_per_s": PAPER[task], "ratio_to_paper": round(last["samples_per_s"] / PAPER[task], 3),
            "train_samples": last["train_samples"], "parameters": size,
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tasks", default="scene,act")
    ap.add_argument("--movies", type=int, default=24, help="synthetic movies per task (60%% train)")
    ap.add_argument("--epochs", type=int, default=2, help="the last epoch is reported (the first warms up)")
    ap.add_argument("--scene-batch", type=int, help="scene windows per step (default: the config's, 256)")
    ap.add_argument("--act-scenes", default="600,800", help="scenes per act movie, lo,hi (~2 shots each)")
    ap.add_argument("--out", type=Path, help="work folder (default: a temporary one)")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="mega-throughput-"))
    for task in args.tasks.split(","):
        print(json.dumps(measure(task, work, args)), flush=True)


if __name__ == "__main__":
    main()
