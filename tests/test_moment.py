"""Moment retrieval: the official metrics on hand-computed cases (multi-window ground truth, ties,
truncation, thresholds), annotations and their errors, the planted generator, MESM's two
enhancements, and train / eval / score end to end on a planted set (docs/moments.md)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mega_pipe.manifests.errors import MegaPipeError
from mega_pipe.manifests.moments import (
    PlantedConfig,
    convert_charades,
    planted_world,
    read_annotations,
    read_moment_dataset,
    write_planted,
)
from mega_pipe.model import moment as M
from mega_pipe.model.moment_metrics import (
    charades_scores,
    query_ap,
    qvhighlights_scores,
)
from mega_pipe.pipeline.cli import main


def _gt(qid, windows):
    return {"qid": qid, "query": f"q{qid}", "vid": f"v{qid}", "duration": 150, "relevant_windows": windows}


def _pred(qid, windows):
    return {"qid": qid, "query": f"q{qid}", "vid": f"v{qid}", "pred_relevant_windows": windows}


# Worked by hand in docs/moments.md ("The metrics, by hand").
GT = [_gt(1, [[0, 10], [20, 30]]), _gt(2, [[0, 10]]), _gt(3, [[0, 10]]), _gt(4, [[0, 10]]),
      _gt(7, [[0, 10], [5, 15]])]
PRED = [
    _pred(1, [[0, 10, 0.9], [20, 30, 0.9], [40, 50, 0.8]]),        # both GT windows found, one FP
    _pred(2, [[20, 30, 0.5], [0, 10, 0.5]]),                       # tie: submitted order kept
    _pred(3, [[100 + i, 101 + i, 0.5] for i in range(10)] + [[0, 10, 0.99]]),   # 11th is cut
    _pred(4, [[0, 7, 1.0]]),                                       # IoU exactly 0.7
    _pred(7, [[0, 12, 0.9], [5, 15, 0.8]]),                        # IoU 0.833 then a free window
]


def test_query_ap_by_hand():
    assert query_ap([[0, 10], [20, 30]], [[0, 10, .9], [20, 30, .9], [40, 50, .8]]).tolist() == [1.0] * 10
    assert query_ap([[0, 10]], [[20, 30, .5], [0, 10, .5]]).tolist() == [0.5] * 10
    ap7 = query_ap([[0, 10], [5, 15]], [[0, 12, .9], [5, 15, .8]])
    assert ap7.tolist() == [1.0] * 7 + [0.25] * 3
    # a second prediction of an already taken window is a false positive
    assert query_ap([[0, 10]], [[0, 10, .9], [0, 10, .8]]).tolist() == [1.0] * 10
    assert query_ap([[0, 10]], [[0, 10, .8], [30, 40, .9]]).tolist() == [0.5] * 10


def test_qvhighlights_scores_by_hand():
    s = qvhighlights_scores(PRED, GT)
    full = s["full"]
    # per threshold: 0.5-0.7 (1 + .5 + 0 + 1 + 1)/5; 0.75-0.8 (1 + .5 + 0 + 0 + 1)/5; 0.85+ (1 + .5 + .25)/5
    assert [full["MR-mAP"][k] for k in ("0.5", "0.7", "0.75", "0.8", "0.85", "0.95")] == \
        [70.0, 70.0, 50.0, 50.0, 35.0, 35.0]
    assert full["MR-mAP"]["average"] == 55.5
    # R1: first *submitted* window; q1, q4 (IoU 0.7), q7 (0.833) hit at 0.5 and 0.7
    assert full["MR-R1"]["0.5"] == 60.0 and full["MR-R1"]["0.7"] == 60.0
    assert full["MR-R1"]["0.75"] == 40.0 and full["MR-R1"]["0.85"] == 20.0
    assert s["brief"]["MR-full-mAP@0.75"] == 50.0 and s["brief"]["MR-short-mAP"] == 55.5
    assert s["middle"] is None and s["brief"]["MR-long-mAP"] is None


def test_r1_uses_the_best_gt_window_and_rounds_to_two_decimals():
    gt = [_gt(1, [[0, 10], [50, 60]]), _gt(2, [[0, 10]]), _gt(3, [[0, 30]])]
    pred = [_pred(1, [[50, 60, 0.1], [0, 10, 0.9]]), _pred(2, [[0, 10, 1]]), _pred(3, [[40, 50, 1]])]
    s = qvhighlights_scores(pred, gt)
    assert s["full"]["MR-R1"]["0.95"] == 66.67       # 2 of 3, rounded
    # buckets: windows of length 10 are "short", 30 is "middle"
    assert s["brief"]["MR-middle-mAP"] == 0.0 and s["short"]["MR-R1"]["0.5"] == 100.0


def test_qids_must_match_and_windows_be_well_formed():
    with pytest.raises(MegaPipeError, match="same qids"):
        qvhighlights_scores(PRED[:2], GT)
    with pytest.raises(MegaPipeError, match="appears twice"):
        qvhighlights_scores(PRED + PRED[:1], GT)
    with pytest.raises(MegaPipeError, match="start, end, score"):
        qvhighlights_scores([_pred(1, [[0, 10]])], [GT[0]])


def test_charades_scores_by_hand():
    gt = [_gt(1, [[0, 10]]), _gt(2, [[2, 4]])]
    pred = [_pred(1, [[0, 5, 0.3], [0, 8, 0.9]]), _pred(2, [[3, 4, 0.5], [0, 10, 0.5]])]
    assert charades_scores(pred, gt) == {"R1@0.5": 100.0, "R1@0.7": 50.0, "mIoU": 65.0}


# -- annotations -------------------------------------------------------------------------------------
def test_annotation_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "gt.jsonl"
    bad.write_text(json.dumps(_gt(1, [[140, 160]])) + "\n")
    with pytest.raises(MegaPipeError, match=r"window \[140, 160\] lies outside the video \[0, 150\]"):
        read_annotations(bad)
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps(_pred(1, [[0, 1, 1]])) + "\n")
    assert main(["score", "--task", "moment", str(preds), "--ground-truth", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mega-pipe: error: ") and "outside the video" in err[0]
    empty = tmp_path / "e.jsonl"
    empty.write_text(json.dumps({**_gt(1, [[0, 1]]), "query": "  "}) + "\n")
    with pytest.raises(MegaPipeError, match="empty query"):
        read_annotations(empty)


def test_score_cli_reads_the_submission_layout(tmp_path, capsys):
    gt, pred = tmp_path / "gt.jsonl", tmp_path / "pred.jsonl"
    gt.write_text("".join(json.dumps(g) + "\n" for g in GT))
    pred.write_text("".join(json.dumps(p) + "\n" for p in PRED))
    assert main(["score", "--task", "moment", str(pred), "--ground-truth", str(gt)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["brief"]["MR-full-mAP"] == 55.5 and out["brief"]["MR-full-R1@0.7"] == 60.0


def test_charades_converter(tmp_path):
    sta = tmp_path / "sta.txt"
    sta.write_text("AO8RW 0.0 6.9##a person is putting a book on a shelf.\nY6R7T 3.1 12.5##person opens door\n")
    queries, cut = convert_charades(sta, {"AO8RW": 30.0, "Y6R7T": 12.0})
    assert cut == 1 and queries[1].windows == ((3.1, 12.0),) and queries[0].query.startswith("a person")
    with pytest.raises(MegaPipeError, match="no length"):
        convert_charades(sta, {"AO8RW": 30.0})


# -- planted set and model ------------------------------------------------------------------------------
def test_planted_set_is_well_formed_and_seeded(tmp_path):
    cfg = PlantedConfig(n_videos=10, seed=3)
    ds = read_moment_dataset(write_planted(tmp_path / "a", cfg))
    qs = [q for s in ("train", "val", "test") for q in ds.queries(s)]
    assert len({q.vid for q in qs}) == 10 and any(len(q.windows) == 2 for q in qs)
    for q in qs:
        assert all(0 <= s < e <= q.duration for s, e in q.windows)
    again = read_moment_dataset(write_planted(tmp_path / "b", cfg))
    assert [q.record() for q in again.queries("train")] == [q.record() for q in ds.queries("train")]
    # the relation space: a concept's text vector is unrelated by cosine to its image vector
    image, text, _ = planted_world(PlantedConfig(space="relation"))
    assert abs(float(np.mean(np.sum(image * text, 1)))) < 0.15
    image, text, _ = planted_world(PlantedConfig(space="shared"))
    assert float(np.mean(np.sum(image * text, 1))) > 0.5


def _tiny_model(use_fw=True, use_ss=True):
    cfg = M.replace(M.CONFIGS["moment-small"], hidden=16, heads=2, ff=32, use_fw=use_fw, use_ss=use_ss,
                    dropout=0.0, input_dropout=0.0)
    torch.manual_seed(0)
    return M.MESM(cfg, 8, 6, 5).eval()


def _batch(n_videos=2, per_video=2, L=10, T=4):
    rng = np.random.default_rng(0)
    items, videos = [], {}
    for v in range(n_videos):
        videos[f"v{v}"] = rng.standard_normal((L, 8)).astype(np.float32)
        for k in range(per_video):
            q = M.MomentQuery(f"{v}-{k}", "x", f"v{v}", L * 2.0, ((2.0 * k, 2.0 * k + 6),))
            items.append(M.Item(q, rng.standard_normal((T, 6)).astype(np.float32), np.arange(T),
                                rng.standard_normal(6).astype(np.float32)))
    data = M.SplitData(items, videos, 2.0)
    return data, M.make_batch(items, data, {0: 0, 1: 1, 2: 2}, "cpu")


def test_context_sentence_token_reads_only_its_own_video():
    model = _tiny_model()
    _data, b = _batch()
    with torch.no_grad():
        sent = model.text_proj(b.sentence.unsqueeze(1)).squeeze(1)
        base = model.sentence_token(sent, b.group, model.video_proj(b.video), b.video_pad)
        changed = sent.clone()
        changed[1] += 1.0                     # another query of video 0
        tok = model.sentence_token(changed, b.group, model.video_proj(b.video), b.video_pad)
    assert not torch.allclose(tok[0], base[0])        # the context sentence matters
    assert torch.allclose(tok[2:], base[2:])          # video 1's queries do not see video 0's
    assert torch.allclose(tok.norm(dim=-1), torch.ones(4))


def test_word_reconstruction_masks_only_known_words_and_reads_the_moment():
    model = _tiny_model()
    _data, b = _batch()
    out = model(b)
    gen = torch.Generator().manual_seed(0)
    logits, masked = model.reconstruct_words(b, out["video"], out["pos"], gen)
    assert logits.shape == (4, 4, 5)
    assert masked.any(1).all() and not (masked & (b.word_class < 0)).any()
    # clips outside the ground-truth moment do not change the reconstruction
    video2 = out["video"].clone()
    video2[~b.in_moment] += 5.0
    logits2, masked2 = model.reconstruct_words(b, video2, out["pos"], torch.Generator().manual_seed(0))
    assert torch.equal(masked, masked2) and torch.allclose(logits, logits2, atol=1e-5)
    losses = M.moment_loss(model.train(), model(b), b, gen)
    assert {"span", "giou", "label", "saliency", "fw", "ss"} <= set(losses)
    losses["total"].backward()
    assert model.word_mask.grad is not None and model.sentence_mask.grad is not None


def test_train_eval_score_end_to_end(tmp_path, capsys):
    manifest = write_planted(tmp_path / "planted", PlantedConfig(n_videos=12, seed=1, space="shared"))
    run = tmp_path / "run"
    assert main(["train", "--task", "moment", "--manifest", str(manifest), "--out", str(run),
                 "--config", "moment-small", "--epochs", "6", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["task"] == "moment" and (run / "best.pt").is_file()
    assert main(["train", "--task", "moment", "--manifest", str(manifest), "--out", str(run),
                 "--resume"]) == 2
    assert "--resume does not apply" in capsys.readouterr().err
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert history[-1]["loss"]["total"] < history[0]["loss"]["total"]      # it optimises
    assert main(["eval", "--checkpoint", str(run / "best.pt"), "--manifest", str(manifest),
                 "--split", "test"]) == 0
    ev = json.loads(capsys.readouterr().out)
    preds = [json.loads(line) for line in Path(ev["predictions"]).read_text().splitlines()]
    for p in preds:
        ws = p["pred_relevant_windows"]
        assert len(ws) <= 10 and [w[2] for w in ws] == sorted((w[2] for w in ws), reverse=True)
    gt = tmp_path / "planted" / "test.jsonl"
    assert main(["score", "--task", "moment", ev["predictions"], "--ground-truth", str(gt)]) == 0
    assert json.loads(capsys.readouterr().out)["brief"] == ev["metrics"]


def test_the_train_summary_is_the_other_tasks_and_a_redirected_log_has_no_bar(tmp_path, capsys):
    """Epochs count from 1 (summary, metrics.jsonl, the checkpoint) and the summary names the
    metric that chose the epoch, as train's summary for scene, act and synopsis does; without
    --no-progress and with stderr not a terminal, no bar is drawn into the log."""
    manifest = write_planted(tmp_path / "planted", PlantedConfig(n_videos=12, seed=1, space="shared"))
    run = tmp_path / "run"
    assert main(["train", "--task", "moment", "--manifest", str(manifest), "--out", str(run),
                 "--config", "moment-small", "--epochs", "2"]) == 0
    out = capsys.readouterr()
    assert "\r" not in out.err and "epoch/s" not in out.err and "it/s" not in out.err
    summary = json.loads(out.out)
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    assert summary["select_metric"] == "MR-full-mAP" and summary["val_split"] == "val"
    best = max(history, key=lambda h: h["val"]["MR-full-mAP"])
    assert summary["best_epoch"] == best["epoch"] and summary["best_val"] == best["val"]
    assert torch.load(run / "best.pt", weights_only=True)["epoch"] == summary["best_epoch"]


def test_a_bad_moment_config_file_or_epoch_count_is_one_line(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(MegaPipeError, match=r"notes\.txt: not JSON"):
        M.moment_config(str(text))
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"base": "moment-smal"}))
    with pytest.raises(MegaPipeError, match=r"base 'moment-smal' is not one of moment-paper, moment-small"):
        M.moment_config(str(base))
    with pytest.raises(MegaPipeError, match="epochs and batch size must be at least 1"):
        M.train_moment(tmp_path / "no-such.json", tmp_path / "run", M.MomentTrainOptions(config="moment-small",
                                                                                         epochs=0))
