"""Every report names what produced its numbers: the model (``"MEGA"`` only for the paper's
model, else ``"MEGA variant"`` with its additions and departures listed), the epoch, and whether
a training step was taken — in train's summary, metrics.jsonl, eval's JSON, boundaries.json's
``methods`` and model-summary. Real training runs on a small synthetic set."""
from __future__ import annotations

import dataclasses
import json

import pytest
from mega_pipe.manifests.synth import generate
from mega_pipe.model.config import describe_model, load_config
from mega_pipe.model.evaluate import evaluate
from mega_pipe.model.train import TrainOptions, train
from mega_pipe.pipeline.cli import main


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("honest") / "synth", 6, seed=3,
                    modalities={"clip": 8, "place": 8})


def test_the_paper_model_is_called_mega_and_additions_are_listed():
    assert describe_model(load_config("act")) == {"name": "MEGA", "task": "act", "additions": [],
                                                  "departures": []}
    variant = describe_model(load_config("act-sync"))
    assert variant["name"] == "MEGA variant"
    assert {"bottleneck_seed=bin_mean", "position_bins=40", "sync.prior=10.0"} <= set(variant["additions"])
    no_align = describe_model(dataclasses.replace(load_config("act"), align_pe=False))
    assert no_align["name"] == "MEGA variant" and no_align["departures"] == ["no Align.PE"]


def test_the_best_epoch_is_always_a_trained_one(synth, tmp_path):
    """Nothing untrained is a candidate for best.pt: even when training barely moves the model
    (lr ~ 0), the best epoch is epoch 1, and summary, metrics.jsonl and eval say it was trained."""
    run = tmp_path / "act"
    summary = train("act", synth, run, TrainOptions(config="act-small", epochs=1, lr=1e-12,
                                                    device="cpu", progress=False))
    assert summary["best_epoch"] == 1
    model = summary["model"]
    assert model == {"name": "MEGA", "task": "act", "additions": [], "departures": [], "epoch": 1, "trained": True}
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1]
    result = evaluate(run / "best.pt", synth, "test", device="cpu")
    assert result["model"] == model
    saved = json.loads((run / "eval_act_test.json").read_text())
    assert saved["model"] == result["model"]


def test_eval_says_when_the_turning_point_distributions_are_flat(synth, tmp_path, caplog):
    """A shot model that collapsed to constant logits (what the paper config's literal Eq. 8
    reached in the TRIPOD setting, docs/training.md) gives flat distributions whose argmax is
    noise: eval reports the flat fraction and warns; a working model is not flagged."""
    import torch

    run = tmp_path / "act"
    train("act", synth, run, TrainOptions(config="act-small", epochs=1, device="cpu", progress=False))
    normal = evaluate(run / "best.pt", synth, "test", out=tmp_path / "normal", device="cpu")
    assert normal["flat_posteriors"] < 0.5 and "flat" not in caplog.text

    state = torch.load(run / "best.pt", weights_only=True)
    for name in ("head.proj.weight", "head.proj.bias"):   # MEGA's TP head: constant logits
        state["model"][name].zero_()
    torch.save(state, tmp_path / "collapsed.pt")
    collapsed = evaluate(tmp_path / "collapsed.pt", synth, "test", out=tmp_path / "collapsed", device="cpu")
    assert collapsed["flat_posteriors"] == 1.0
    assert "100% of the turning-point distributions are flat" in caplog.text
    saved = json.loads((tmp_path / "collapsed" / "eval_act_test.json").read_text())
    assert saved["flat_posteriors"] == 1.0


def test_turning_point_results_sit_beside_the_tripod_prior(synth, tmp_path, caplog):
    """eval's metrics and every validation record of train carry TRIPOD's position prior scored on
    the same movies and gold (recomputed here from the prior itself), and a model that does not
    beat it on TA is told so in one warning."""
    from mega_pipe.model.metrics import act_metrics
    from mega_pipe.model.prior import tp_prior_by_index
    from mega_pipe.model.tasks import task_for, warn_unless_above_prior

    run = tmp_path / "act"
    summary = train("act", synth, run, TrainOptions(config="act-small", epochs=1, device="cpu", progress=False))
    assert set(summary["best_val"]["tripod_prior"]) == {"ta", "pa", "d"}
    result = evaluate(run / "best.pt", synth, "test", device="cpu")
    records = [json.loads(line) for line in open(result["predictions"])]
    by_hand = act_metrics([{"movie_id": r["movie_id"], "gold": r["gold"],
                            "posteriors": tp_prior_by_index(len(r["posteriors"][0])).tolist()} for r in records])
    assert result["metrics"]["tripod_prior"] == pytest.approx({k: by_hand[k] for k in ("ta", "pa", "d")})
    saved = json.loads((run / "eval_act_test.json").read_text())
    assert saved["metrics"]["tripod_prior"] == pytest.approx(result["metrics"]["tripod_prior"])

    act = task_for("act")
    prior_only = [{**r, "posteriors": tp_prior_by_index(len(r["posteriors"][0])).tolist()} for r in records]
    caplog.clear()
    warn_unless_above_prior(act.scored(prior_only), "the prior itself")
    assert "the prior itself: TA" in caplog.text and "not above TRIPOD's position prior" in caplog.text
    gold_hit = [{**r, "posteriors": [[1.0 if i == g[0] else 0.0 for i in range(len(r["posteriors"][0]))]
                                     for g in r["gold"]]} for r in records]
    caplog.clear()
    warn_unless_above_prior(act.scored(gold_hit), "an oracle")
    assert "not above" not in caplog.text


def test_a_trained_checkpoint_says_its_epoch_in_boundaries(tmp_path, capsys):
    from mega_pipe.pipeline.demo import make_movie

    tiny = generate(tmp_path / "tiny", 4, seed=1, modalities={"clip": 32})   # the tiny set's clip
    run = tmp_path / "scene"
    summary = train("scene", tiny, run, TrainOptions(config="scene-small", epochs=1,
                                                     device="cpu", progress=False))
    assert summary["model"]["trained"] is True and summary["model"]["epoch"] == 1
    assert evaluate(run / "best.pt", tiny, "test", device="cpu")["model"] == summary["model"]
    movie, out = tmp_path / "m.mp4", tmp_path / "b.json"
    make_movie(movie, [1.5] * 3, size=(160, 90), audio=False)
    assert main(["segment", str(movie), "--out", str(out), "--scene-checkpoint",
                 str(run / "best.pt"), "--features", str(tmp_path / "f"), "--models", "tiny",
                 "--no-progress"]) == 0
    method = json.loads(out.read_text())["methods"]["scenes"]
    assert method["name"] == "checkpoint" and method["model"] == summary["model"]


def test_model_summary_names_the_model(capsys):
    assert main(["model-summary", "--task", "scene", "--modalities", "clip=32"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"]["name"] == "MEGA" and out["model"]["additions"] == []
    assert main(["model-summary", "--task", "scene", "--config", "scene-relational", "--modalities", "clip=32"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"]["name"] == "MEGA variant"
    assert out["model"]["additions"] == ["bottleneck_seed=bin_mean", "relation_features=cut"]
