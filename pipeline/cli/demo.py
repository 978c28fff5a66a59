"""``mega-pipe demo``: a generated sample movie through ``extract`` (tiny models, no download)."""
from __future__ import annotations

import logging
from pathlib import Path

from ..demo import run_demo
from .extract import add_extract_options, extract_config

log = logging.getLogger(__name__)


def _cmd_demo(args) -> int:
    _, manifest, shots = run_demo(args.out, extract_config(args))
    print("shot  start_frame  end_frame  start_s  end_s")
    for row in shots:
        print(f"{row['shot_idx']:>4}  {row['start_frame']:>11}  {row['end_frame']:>9}  "
              f"{row['start_s']:>7.2f}  {row['end_s']:>5.2f}")
    print(f"features: {args.out / 'features' / manifest['movie_id']} "
          f"(modalities: {', '.join(manifest['modalities'])})")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("demo", help="generate a sample movie and extract its features (tiny models)")
    p.add_argument("--out", type=Path, default=Path("mega-pipe-demo"),
                   help="folder for the sample movie and its features/ (default ./mega-pipe-demo)")
    add_extract_options(p, models="tiny")
    p.set_defaults(func=_cmd_demo)
