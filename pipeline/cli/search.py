"""``mega-pipe search`` (zero-shot text-to-moment search, pipeline/search.py) and
``mega-pipe moments charades|planted`` (moment annotations: the Charades-STA converter and the
planted moment generator, manifests/moments.py); the moment model's ``train``/``eval``/``score``
handlers that ``train.py`` routes here for ``--task moment`` (docs/moments.md)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ...manifests.errors import MegaPipeError
from ...manifests.jsonio import read_jsonl
from ...manifests.moments import (
    PlantedConfig,
    convert_charades,
    read_annotations,
    read_charades_durations,
    write_annotations,
    write_planted,
)
from ...model.moment_metrics import moment_scores
from .extract import plural
from ..search import (
    Searcher,
    format_results,
    text_encoder_for,
    write_html,
    write_results,
)

log = logging.getLogger(__name__)


def _cmd_search(args: argparse.Namespace) -> int:
    queries = [args.query]
    if args.queries_file:
        queries += [line.strip() for line in args.queries_file.read_text().splitlines() if line.strip()]
    for q in queries:
        if not q.strip():
            raise MegaPipeError("search: the query is empty")
    searcher = Searcher(args.features, index=args.index, index_dir=args.index_dir,
                        weights_dirs=args.weights_dir or ())
    for q in queries:
        searcher.encoder.token_ids(q)         # every query checked before any work
    results = []
    for q in queries:
        r = searcher.search(q, top_k=args.top_k, per_movie=args.per_movie, nms_iou=args.nms_iou)
        results.append(r)
        log.info("search: %r: %s from %s in %.3f s (index: %s)", q, plural(len(r.moments), "moment"),
                 plural(len(searcher.cat.movies), "movie"), r.seconds, r.index)
    if args.html:
        n = write_html(results, args.html)
        log.info("search: %s -> %s", plural(n, "thumbnail"), args.html)
    text = format_results(results, args.format)
    if args.out:
        write_results(args.out, text)
        print(f"{plural(sum(len(r.moments) for r in results), 'moment')} -> {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _cmd_charades(args: argparse.Namespace) -> int:
    durations: dict[str, float] = {}
    for csv_path in args.durations:
        durations.update(read_charades_durations(csv_path))
    queries, cut = convert_charades(args.sta, durations)
    if cut:
        log.warning("%d window ends past their video's length were cut to the length", cut)
    write_annotations(args.out, queries)
    print(f"{len(queries)} {'query' if len(queries) == 1 else 'queries'} -> {args.out}")
    return 0


def _cmd_planted(args: argparse.Namespace) -> int:
    cfg = PlantedConfig(n_videos=args.videos, seed=args.seed, world_seed=args.world_seed, space=args.space)
    if cfg.n_videos < 5:
        raise MegaPipeError("--videos must be at least 5 (train, val and test need videos)")
    path = write_planted(args.out, cfg)
    print(f"planted moment dataset ({cfg.space} space, {cfg.n_videos} videos) -> {path}")
    return 0


# -- `train|eval|score --task moment` (called from train.py) ------------------------------------------
def train_moment(args: argparse.Namespace) -> int:
    for name in ("resume", "modalities", "synopsis_checkpoint", "init", "freeze_init", "ray", "workers"):
        if getattr(args, name, None):
            raise MegaPipeError(f"train --task moment: --{name.replace('_', '-')} does not apply to moment "
                                "retrieval (docs/moments.md)")
    from ...model.moment import MomentTrainOptions, train_moment   # torch: imported on use

    summary = train_moment(args.manifest, args.out, MomentTrainOptions(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device, seed=args.seed,
        config=args.config, progress=not args.no_progress), text_features=_text_features_factory())
    print(json.dumps(summary, indent=2))
    return 0


def is_moment_checkpoint(path: Path) -> bool:
    from ...model.moment import is_moment_checkpoint as check   # torch: imported on use

    return check(path)


def eval_moment(args: argparse.Namespace) -> int:
    from ...model.moment import evaluate_moment   # torch: imported on use

    out = evaluate_moment(args.checkpoint, args.manifest, args.split, args.out,
                          device=args.device, text_features=_text_features_factory())
    print(json.dumps(out, indent=2))
    return 0


def score_moment(args: argparse.Namespace) -> int:
    if not args.ground_truth:
        raise MegaPipeError("score --task moment needs --ground-truth (annotations in the QVHighlights layout)")
    preds = [obj for _, obj in read_jsonl(args.records, "predictions")]
    gt = [q.record() for q in read_annotations(args.ground_truth)]
    print(json.dumps(moment_scores(preds, gt, args.protocol), indent=2))
    return 0


def _text_features_factory():
    """For datasets of our own feature folders: the CLIP text tower of the folders' weights entry
    (pipeline/search.py), given to the model package as a plain function."""
    cache: dict = {}

    def encode(model_id: str, query: str):
        if model_id not in cache:
            cache[model_id] = text_encoder_for(model_id)
        return cache[model_id].encode_tokens(query)

    return encode


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="zero-shot text-to-moment search over feature folders (docs/moments.md)")
    p.add_argument("query", help="what to find, e.g. 'a man runs along a beach'")
    p.add_argument("features", type=Path, nargs="+", metavar="FEATURES",
                   help="feature folders, or folders of them (a catalogue)")
    p.add_argument("--queries-file", type=Path, help="more queries, one per line")
    p.add_argument("--top-k", type=int, default=10, help="moments in all (default 10)")
    p.add_argument("--per-movie", type=int, default=3, help="moments per movie at most (default 3)")
    p.add_argument("--nms-iou", type=float, default=0.5, help="suppress a moment overlapping a better one "
                   "by more than this temporal IoU (default 0.5)")
    p.add_argument("--index", default="auto", choices=("auto", "always", "never"),
                   help="FAISS index of the catalogue: auto = from 20 movies on (default)")
    p.add_argument("--index-dir", type=Path, help="where indexes are kept (default: FEATURES/.search-index "
                   "for one folder of folders, else ~/.cache/mega-pipe/search-index)")
    p.add_argument("--weights-dir", type=Path, action="append", help="where the CLIP weights file is")
    p.add_argument("--format", default="jsonl", choices=("jsonl", "csv"),
                   help="the moments as JSON Lines (default) or CSV")
    p.add_argument("--out", type=Path, help="write the moments here instead of stdout")
    p.add_argument("--html", type=Path, help="also an HTML page of the moments with the frame at each "
                   "moment's middle (the movie files must be where the folders' manifests say)")
    p.set_defaults(func=_cmd_search)

    m = sub.add_parser("moments", help="moment-retrieval annotations: Charades-STA converter, planted set")
    msub = m.add_subparsers(dest="moments_command", required=True, metavar="KIND")
    c = msub.add_parser("charades", help="Charades-STA text annotations -> QVHighlights JSON Lines")
    c.add_argument("sta", type=Path, help="charades_sta_train.txt / _test.txt")
    c.add_argument("--durations", type=Path, nargs="+", required=True, help="Charades_v1_train.csv / _test.csv")
    c.add_argument("--out", type=Path, required=True, help="JSON Lines file to write")
    c.set_defaults(func=_cmd_charades)
    pl = msub.add_parser("planted", help="a planted moment dataset (moments.json) to show a model learns")
    pl.add_argument("out", type=Path, help="folder to write")
    pl.add_argument("--videos", type=int, default=400,
                    help="videos in all, split into train, val and test (default 400, at least 5)")
    pl.add_argument("--seed", type=int, default=0, help="videos, queries and noise")
    pl.add_argument("--world-seed", type=int, default=0, help="concept vectors and text-image relation")
    pl.add_argument("--space", default="relation", choices=("relation", "shared"),
                    help="a concept's text vector: relation (default): its image vector turned "
                    "by a fixed rotation, so only a trained model finds the moment; shared: its "
                    "image vector plus noise, so a fixed similarity finds it (docs/moments.md)")
    pl.set_defaults(func=_cmd_planted)
