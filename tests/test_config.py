"""Model configs: the dataclasses are the schema; every key is checked at load, in one line."""
from __future__ import annotations

import json

import pytest
from mega_pipe.manifests.errors import MegaPipeError
from mega_pipe.model.config import (
    ActTrainConfig,
    SceneTrainConfig,
    checkpoint_config,
    config_from_dict,
    config_to_dict,
    describe_model,
    load_config,
    packaged_configs,
)
from mega_pipe.model.train import TrainOptions, train


def _write(tmp_path, data: dict, name: str = "x.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _act(**changes) -> dict:
    data = config_to_dict(load_config("act-small"))
    data.update(changes)
    return data


def _act_train(**changes) -> dict:
    return _act(train={**config_to_dict(load_config("act-small"))["train"], **changes})


@pytest.mark.parametrize(
    "data, message",
    [
        (_act(n_head=4), "n_head: unknown key (known: task, max_len,"),
        (_act_train(lr_peak=1e-3), "train.lr_peak: unknown key (known: optimizer, lr,"),
        (_act_train(sync={"spce": "content"}), "train.sync.spce: unknown key (known: space, xi,"),
        (_act_train(distill={"temperature": 0.1}), "train.distill.temperature: unknown key"),
        (_act_train(loss_weights={"sync": 1, "kd": 1}), "train.loss_weights.kd: unknown key"),
        (_act_train(lr="fast"), 'train.lr: expected a number, got "fast"'),
        (_act_train(epochs=2.5), "train.epochs: expected an integer, got 2.5"),
        (_act_train(distill={"cosine": "yes"}), 'train.distill.cosine: expected true or false, got "yes"'),
        (_act_train(sync="content"), 'train.sync: expected an object, got "content"'),
        (_act_train(optimizer="sgd"), 'train.optimizer: expected one of "adamw", "adam", got "sgd"'),
        (_act_train(loss="balanced_cross_entropy"), "train.loss: unknown key"),   # retired
        (_act_train(label_position="center"), "train.label_position: unknown key"),   # retired
        (_act_train(modality_dropout=1.0), "train.modality_dropout: must be in [0.0, 1.0)"),
        (_act_train(sync={"quantile": 1.5}), "train.sync.quantile: must be in"),
        (_act(width="wide"), 'width: expected an integer, got "wide"'),
        ({k: v for k, v in _act().items() if k != "width"}, "width: required"),
        (_act(synopsis={"max_len": 60, "n_bottleneck": 20, "dropout": 0.1}), "synopsis.n_layers: required"),
        (_act(synopsis=None), "synopsis: required for task"),
        (_act(task="scenes"), 'task: expected one of "scene", "act", "synopsis", got "scenes"'),
        (_act(positional="rotary"), "positional: expected one of"),
    ],
)
def test_a_bad_key_is_one_line_naming_file_and_key(tmp_path, data, message):
    path = _write(tmp_path, data)
    with pytest.raises(MegaPipeError) as err:
        load_config(str(path))
    text = str(err.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_act_only_sections_are_unknown_in_a_scene_config(tmp_path):
    data = config_to_dict(load_config("scene-small"))
    data["train"]["sync"] = {"space": "content"}
    with pytest.raises(MegaPipeError, match=r"x\.json: train\.sync: unknown key"):
        load_config(str(_write(tmp_path, data)))


def test_packaged_configs_name_themselves_in_errors():
    with pytest.raises(MegaPipeError, match=r"^model/configs/scene\.json: heads: unknown key"):
        load_config("scene", heads=8)


def test_an_unknown_config_name_lists_the_packaged_ones_of_its_task_in_one_line():
    """For a task, the configs that train it (synopsis: also an act config's synopsis network);
    without one, every packaged config by its task; a moment config's name says where it goes."""
    from mega_pipe.model import moment
    from mega_pipe.model.config import MOMENT_CONFIGS

    assert packaged_configs("scene") == ["scene", "scene-relational", "scene-small"]
    assert packaged_configs("synopsis") == ["act", "act-small", "act-sync", "synopsis"]
    with pytest.raises(MegaPipeError) as err:
        load_config("scene-smal", "scene")
    assert str(err.value) == ("model config 'scene-smal' is neither a packaged config for --task scene "
                              "(scene, scene-relational, scene-small) nor a JSON file")
    with pytest.raises(MegaPipeError) as err:
        load_config("moment-small")
    assert str(err.value) == ("model config 'moment-small' is neither a packaged config (act: act, act-small, "
                              "act-sync; scene: scene, scene-relational, scene-small; synopsis: synopsis) "
                              "nor a JSON file; moment-small is a config of `train --task moment`")
    assert MOMENT_CONFIGS == tuple(moment.CONFIGS)       # the names config.py gives without torch
    with pytest.raises(MegaPipeError, match=r"not a packaged moment config \(moment-paper, moment-small\) nor "
                       r"a JSON file; act-small is a MEGA config"):
        moment.moment_config("act-small")


def test_config_errors_come_before_any_data_is_read(tmp_path):
    path = _write(tmp_path, _act_train(sync={"spce": "content"}))
    with pytest.raises(MegaPipeError, match=r"train\.sync\.spce: unknown key"):
        train("act", tmp_path / "no" / "manifest.jsonl", tmp_path / "run", TrainOptions(
            config=str(path), device="cpu", progress=False))
    with pytest.raises(MegaPipeError, match=r"train\.lr: expected a number"):
        train("scene", tmp_path / "no" / "manifest.jsonl", tmp_path / "run", TrainOptions(
            device="cpu", progress=False, config_overrides={"train": {"lr": "fast"}}))
    assert not (tmp_path / "run").exists()


def test_an_act_config_without_sync_and_distill_gets_the_paper_forms(tmp_path):
    """Every default is the paper's model: a config that leaves the sections out synchronises
    the fused embeddings without a prior and distils with Eq. 8 as written (docs/model.md)."""
    data = _act()
    for key in ("sync", "distill", "loss_weights"):
        del data["train"][key]
    cfg = load_config(str(_write(tmp_path, data)))
    assert (cfg.train.sync.space, cfg.train.sync.prior) == ("fused", 0.0)
    assert (cfg.train.distill.direction, cfg.train.distill.cosine, cfg.train.distill.teacher_tau) == ("literal", False, 1.0)
    assert describe_model(cfg)["name"] == "MEGA"


def test_the_paper_configs_are_the_paper_model_and_the_variants_are_named():
    """`scene`, `act` and their reduced widths add nothing (describe_model: "MEGA"); every
    addition lives in a named variant and is listed; the paper configs' train sections equal
    the code defaults, so no key carries a hidden choice."""
    for name in ("scene", "scene-small", "act", "act-small"):
        cfg = load_config(name)
        assert describe_model(cfg) == {"name": "MEGA", "task": cfg.task, "additions": [], "departures": []}
    assert load_config("act-small").train == ActTrainConfig()
    assert load_config("scene-small").train == SceneTrainConfig()
    relational = describe_model(load_config("scene-relational"))
    assert relational["name"] == "MEGA variant" and "relation_features=cut" in relational["additions"]
    sync = describe_model(load_config("act-sync"))
    assert sync["name"] == "MEGA variant" and {"sync.prior=10.0", "synopsis_guidance"} <= set(sync["additions"])
    assert any(d.startswith("sync.space=content") for d in sync["departures"])
    # The variants differ from their paper configs only in the keys they name.
    paper, variant = config_to_dict(load_config("act-small")), config_to_dict(load_config("act-sync"))
    assert {k for k in paper if paper[k] != variant[k]} == {"bottleneck_seed", "position_bins", "synopsis_guidance", "train"}


def test_every_packaged_config_round_trips():
    for name in packaged_configs():
        cfg = load_config(name)
        assert config_from_dict(config_to_dict(cfg)) == cfg
        assert json.loads(json.dumps(config_to_dict(cfg))) == config_to_dict(cfg)


def test_checkpoints_with_retired_train_keys_still_load():
    data = config_to_dict(load_config("scene"))
    data["train"].update(loss="balanced_cross_entropy", label_position="center")
    assert checkpoint_config(data, "checkpoint x") == load_config("scene")
    with pytest.raises(MegaPipeError, match=r"^x: train\.(loss|label_position): unknown key"):
        config_from_dict(data, "x")


def test_model_summary_bad_modality_is_a_user_error():
    from mega_pipe.model.summary import model_summary

    with pytest.raises(MegaPipeError, match="model-summary: bad modality"):
        model_summary("scene", {"a.b": 8})


def test_synopsis_config_is_the_act_synopsis_network():
    from mega_pipe.model.config import synopsis_model_config

    cfg = load_config("synopsis")
    assert cfg.task == "synopsis" and cfg.synopsis is None and type(cfg.train).__name__ == "SynopsisTrainConfig"
    act = load_config("act-small")
    derived = synopsis_model_config(act, 3)
    assert (derived.width, derived.ffn_width, derived.max_len, derived.n_bottleneck, derived.n_unimodal) == (
        96, 192, 60, 20, 1)
    for bad, message in (({"n_fusion": 2}, "n_fusion: must be 1"),
                         ({"synopsis": {"max_len": 60, "n_bottleneck": 20, "dropout": 0.1, "n_layers": 1}},
                          "synopsis: only for task"),
                         ({"train": {"label_smoothing": 1.5}}, "train.label_smoothing: must be in"),
                         ({"train": {"loss_weights": {}}}, "train.loss_weights: unknown key")):
        with pytest.raises(MegaPipeError, match=message):
            load_config("synopsis", **bad)
    with pytest.raises(MegaPipeError, match="position_bins: only for tasks"):
        load_config("scene-small", position_bins=4)
    with pytest.raises(MegaPipeError, match="relation_features: only for task"):
        load_config("synopsis", relation_features="cut")
    # an act shot model's position head is not the synopsis network's
    derived = synopsis_model_config(load_config("act-sync"), 3)
    assert derived.position_bins == act.synopsis.position_bins == 0


def test_n_classes_and_the_scene_window_are_checked_and_honoured(tmp_path):
    """n_classes is the task's (a wrong value is one line, not a crash in training); the scene
    window is the config's max_len (it was fixed at 17 whatever the config said)."""
    assert (load_config("act-small").n_classes, load_config("scene-small").n_classes) == (5, 2)
    with pytest.raises(MegaPipeError, match="n_classes: unknown key"):   # fixed by the task, not a key
        load_config("act-small", n_classes=3)
    with pytest.raises(MegaPipeError, match="max_len: a scene window .* max_len >= 3"):
        load_config("scene-small", max_len=2)
    from mega_pipe.manifests.schema import read_manifest
    from mega_pipe.manifests.synth import generate
    from mega_pipe.model.data import SceneSamples, load_entries
    from mega_pipe.model.train import TrainOptions, train

    manifest = generate(tmp_path / "s", 4, seed=2, modalities={"clip": 8})
    movies = load_entries(read_manifest(manifest), ["clip"])
    assert SceneSamples(movies, ["clip"], window=9).windows.shape[1] == 9
    cfg = tmp_path / "scene9.json"
    from pathlib import Path

    data = json.loads((Path(__file__).resolve().parents[1] / "model/configs/scene-small.json").read_text())
    cfg.write_text(json.dumps({**data, "max_len": 9}))
    summary = train("scene", manifest, tmp_path / "run", TrainOptions(config=str(cfg), epochs=1,
                                                                      device="cpu", progress=False))
    assert summary["best_val"]["ap"] >= 0
