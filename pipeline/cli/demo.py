"""``mega-pipe demo``: a generated sample movie through ``extract`` (tiny models, no download)."""
from __future__ import annotations

import logging
from pathlib import Path

from mega_pipe.manifests.atomic import check_output_dir

from .extract import add_extract_options, extract_config

log = logging.getLogger(__name__)


def _cmd_demo(args) -> int:
    from mega_pipe.manifests.features import FeatureFolder
    from mega_pipe.pipeline.demo import make_sample
    from mega_pipe.pipeline.extract import MovieInput, run_extract

    check_output_dir(args.out, "--out")
    sample = make_sample(args.out / "input")
    log.info("sample movie: %s (cuts at frames %s)", sample["movie"], sample["cuts"])
    done, _ = run_extract([MovieInput(sample["movie"], sample["subtitles"], sample["synopsis"])],
                          args.out / "features", extract_config(args), debug=args.debug,
                          isolate=False)
    m = done[0]
    shots = FeatureFolder(args.out / "features" / m["movie_id"]).read_shots(
        ["shot_idx", "start_frame", "end_frame", "start_s", "end_s"])
    print("shot  start_frame  end_frame  start_s  end_s")
    for row in shots.to_pylist():
        print(f"{row['shot_idx']:>4}  {row['start_frame']:>11}  {row['end_frame']:>9}  "
              f"{row['start_s']:>7.2f}  {row['end_s']:>5.2f}")
    print(f"features: {args.out / 'features' / m['movie_id']} "
          f"(modalities: {', '.join(m['modalities'])})")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("demo", help="generate a sample movie and extract its features (tiny models)")
    p.add_argument("--out", type=Path, default=Path("mega-pipe-demo"))
    add_extract_options(p, models="tiny")
    p.set_defaults(func=_cmd_demo)
