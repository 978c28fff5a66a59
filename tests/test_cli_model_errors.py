"""What the model commands (train, eval, pretrain) tell a user: a mistake is one line and status 2
(a file that is no checkpoint, features or synopses of other dimensions than a checkpoint's, a
misspelt modality or config), and the training log keeps its epoch lines with --no-progress and
holds no progress-bar redraws when stderr is not a terminal. Real runs on small synthetic sets."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from mega_pipe.manifests.errors import MegaPipeError
from mega_pipe.manifests.synth import SynthParams, generate
from mega_pipe.model.checkpoint import read_checkpoint
from mega_pipe.model.pretrain import PretrainSettings
from mega_pipe.model.pretrain_train import PretrainOptions, pretrain
from mega_pipe.model.train import TrainOptions, train
from mega_pipe.pipeline.cli import main

SMALL = SynthParams(scenes=(12, 18), sentences=(10, 14))     # 48-d synopsis sentences


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """Two sets whose clip features (8-d vs 12-d) and synopsis sentences (48-d vs 24-d) differ."""
    root = tmp_path_factory.mktemp("model-errors")
    a = generate(root / "a", 6, seed=1, modalities={"clip": 8, "place": 8}, params=SMALL)
    b = generate(root / "b", 6, seed=2, modalities={"clip": 12, "place": 8},
                 params=dataclasses.replace(SMALL, sentence_dim=24))
    return a, b


@pytest.fixture(scope="module")
def synopsis_run(sets, tmp_path_factory):
    out = tmp_path_factory.mktemp("synopsis") / "run"
    train("synopsis", sets[0], out, TrainOptions(epochs=1, device="cpu", progress=False))
    return out


@pytest.fixture(scope="module")
def pretrain_run(sets, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "run"
    pretrain(sets[0], out, PretrainOptions(settings=PretrainSettings(seq_len=16), epochs=1, device="cpu",
                                           progress=False))
    return out


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("mega-pipe: error: ") and "internal error" not in err
    return err


# --- the training log ------------------------------------------------------------------------------


def test_no_progress_keeps_the_epoch_lines(sets, tmp_path, capsys):
    """--no-progress removes the bars only (its help): the per-epoch summary is still logged."""
    assert main(["train", "--task", "act", "--config", "act-small", "--manifest", str(sets[0]),
                 "--out", str(tmp_path / "act"), "--epochs", "1", "--device", "cpu", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "act epoch 1/1: loss " in err and ", val ta " in err
    assert "\r" not in err and "batch" not in err


def test_a_redirected_log_gets_epoch_lines_and_no_bar_redraws(sets, tmp_path, capsys):
    """Bars are for a terminal: with stderr captured (not a TTY) and no --no-progress, train and
    pretrain write their epoch lines and no carriage-return redraws."""
    assert main(["train", "--task", "synopsis", "--manifest", str(sets[0]), "--out", str(tmp_path / "syn"),
                 "--epochs", "2", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "synopsis epoch 1/2: loss " in err and "synopsis epoch 2/2: loss " in err
    assert "\r" not in err and "batch/s" not in err
    assert main(["pretrain", "--manifest", str(sets[0]), "--out", str(tmp_path / "pre"),
                 "--pretrain-epochs", "1", "--seq-len", "16", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "pretrain epoch 1/1: loss " in err and "\r" not in err and "batch/s" not in err
    assert main(["pretrain", "--manifest", str(sets[0]), "--out", str(tmp_path / "pre2"),
                 "--pretrain-epochs", "1", "--seq-len", "16", "--device", "cpu", "--no-progress"]) == 0
    assert "pretrain epoch 1/1: loss " in capsys.readouterr().err


# --- files that are no checkpoint ----------------------------------------------------------------


def test_eval_of_a_file_that_is_no_checkpoint_is_one_line(sets, tmp_path, capsys):
    text = tmp_path / "notvideo.txt"
    text.write_text("hello\n")
    assert main(["eval", "--checkpoint", str(text), "--manifest", str(sets[0]), "--split", "test"]) == 2
    err = _one_line_error(capsys)
    assert err.endswith(f"{text} is not a mega-pipe checkpoint (not a PyTorch file)")


def test_a_checkpoint_that_cannot_be_read_says_why_in_words(tmp_path):
    cases = {"empty.pt": (b"", "an empty file"),
             "text.pt": (b"hello\n", "not a PyTorch file"),
             "zip.pt": (b"PK\x03\x04garbage", "a zip archive that torch cannot read")}
    for name, (data, reason) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(MegaPipeError, match=f"is not a mega-pipe checkpoint \\({reason}") as err:
            read_checkpoint(tmp_path / name)
        assert "\n" not in str(err.value)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(MegaPipeError, match=r"\(a PyTorch file, but no mega-pipe training run wrote it\)"):
        read_checkpoint(tmp_path / "plain.pt")
    torch.save({"format": "mega-pipe-moment-checkpoint/1"}, tmp_path / "moment.pt")
    with pytest.raises(MegaPipeError, match="of format 'mega-pipe-moment-checkpoint/1', not 'mega-pipe-checkpoint/1'"):
        read_checkpoint(tmp_path / "moment.pt")


# --- inputs of other dimensions than the checkpoint's ---------------------------------------------


def test_eval_names_both_synopsis_dimensions(sets, synopsis_run, capsys):
    assert main(["eval", "--checkpoint", str(synopsis_run / "best.pt"), "--manifest", str(sets[1]),
                 "--split", "test"]) == 2
    err = _one_line_error(capsys)
    assert f"checkpoint {synopsis_run / 'best.pt'}: movie " in err
    assert "synopsis sentences are 24-d, the model expects 48-d" in err


def test_resume_on_inputs_of_other_dimensions_is_one_line(sets, synopsis_run, pretrain_run, capsys):
    assert main(["train", "--task", "synopsis", "--manifest", str(sets[1]), "--out", str(synopsis_run),
                 "--resume", "--epochs", "2", "--no-progress"]) == 2
    assert "--resume: movie " in (err := _one_line_error(capsys))
    assert "synopsis sentences are 24-d, the model expects 48-d" in err
    assert main(["pretrain", "--manifest", str(sets[1]), "--out", str(pretrain_run), "--resume",
                 "--pretrain-epochs", "2", "--no-progress"]) == 2
    assert "--resume: movie " in (err := _one_line_error(capsys))
    assert "modality clip has 12-d features, the model expects 8-d" in err


def test_init_from_encoders_of_other_inputs_is_one_line(sets, pretrain_run, tmp_path, capsys):
    init = pretrain_run / "best.pt"
    assert main(["train", "--task", "scene", "--config", "scene-small", "--manifest", str(sets[1]),
                 "--out", str(tmp_path / "a"), "--init", str(init), "--no-progress"]) == 2
    assert _one_line_error(capsys).endswith(
        f"--init {init}: modality clip was pretrained on 8-d features, this run's are 12-d")
    assert not (tmp_path / "a" / "last.pt").exists()


# --- names ----------------------------------------------------------------------------------------


def test_a_misspelt_modality_is_named_unknown_with_the_ones_there_are(sets, tmp_path, capsys):
    assert main(["train", "--task", "scene", "--config", "scene-small", "--manifest", str(sets[0]),
                 "--out", str(tmp_path / "run"), "--modalities", "clip,plac", "--no-progress"]) == 2
    assert _one_line_error(capsys).endswith(
        "unknown modality plac: the manifest's training movies have clip, place")


def test_a_config_typo_lists_the_tasks_configs(sets, tmp_path, capsys):
    args = ["--manifest", str(sets[0]), "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(["train", "--task", "scene", "--config", "scene-smal", *args]) == 2
    assert _one_line_error(capsys).endswith(
        "model config 'scene-smal' is neither a packaged config for --task scene "
        "(scene, scene-relational, scene-small) nor a JSON file")
    assert main(["train", "--task", "act", "--config", "moment-small", *args]) == 2
    err = _one_line_error(capsys)
    assert "(act, act-small, act-sync)" in err and err.endswith("moment-small is a config of `train --task moment`")
    assert main(["train", "--task", "moment", "--config", "scene-small", *args]) == 2
    err = _one_line_error(capsys)
    assert "(moment-paper, moment-small)" in err and "scene-small is a MEGA config" in err
