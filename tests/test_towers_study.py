"""The towers study's parts: the table it renders, the sizes it reports, ACCURACY.md's section 5."""

from __future__ import annotations

import json


from tests.conftest import REPO
from vtr_core.methods import create_head
from vtr_core.studies import accuracy, towers


def metrics(r1: float, r5: float, r10: float, mdr: float) -> dict:
    return {"R@1": r1, "R@5": r5, "R@10": r10, "MdR": mdr, "MnR": 9.0, "count": 100}


ROW = {"label": "lite0 + meanp", "training": "head, lr 1e-4", "train_seconds": 61.4, "frames_per_s": 81.6,
       "image_mparams": 3.37, "text_mparams": 22.71, "head_mparams": 0.64,
       "val": {"t2v": metrics(22.5, 50.25, 64.0, 5.0), "v2t": metrics(30.0, 61.0, 77.0, 3.0)},
       "test300": {"t2v": metrics(14.0, 36.3, 48.7, 12.0), "v2t": metrics(15.0, 40.0, 51.3, 10.5)}}


def test_the_table_puts_validation_beside_test300():
    header, rule, line = towers.render_towers([ROW])
    columns = header.count("|") - 1
    assert rule == "|" + "---|" * columns and line.count("|") - 1 == columns
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:6] == ["lite0 + meanp", "head, lr 1e-4", "22.5", "50.2", "64.0", "5"]
    assert cells[10:14] == ["14.0", "36.3", "48.7", "12"]  # test300 text-to-video
    assert cells[-3:] == ["61", "82", "3.4 / 22.7 / 0.6"]
    assert towers.render_towers([]) == []


def test_sizes_count_each_part(lite_backbone):
    head = create_head("meanp", lite_backbone, num_frames=4)
    sizes = towers.model_megabytes(lite_backbone, head)
    image = sum(p.numel() for p in lite_backbone.image_model.parameters())
    assert sizes["image_mparams"] == round(image / 1e6, 2) and 3.0 < sizes["image_mparams"] < 5.0  # Lite0: 4.7M
    assert 22.0 < sizes["text_mparams"] < 23.0  # all-MiniLM-L6-v2
    assert sizes["head_mparams"] == round(sum(p.numel() for p in head.parameters()) / 1e6, 2)
    assert towers.frames_per_second(lite_backbone, count=8) > 0


def test_accuracy_md_gets_section_5_from_towers_json(tmp_path):
    study = accuracy.Study(**json.loads((REPO / "docs" / "accuracy.json").read_text()))  # the stored study
    accuracy.write_study(study, tmp_path / "ACCURACY.md", tmp_path / "accuracy.json")
    assert "## 5." not in (tmp_path / "ACCURACY.md").read_text()
    (tmp_path / "towers.json").write_text(json.dumps([ROW]))
    accuracy.write_study(study, tmp_path / "ACCURACY.md", tmp_path / "accuracy.json")
    text = (tmp_path / "ACCURACY.md").read_text()
    assert "## 5. Image towers, the tuned text tower and tuned image stages" in text and "| lite0 + meanp | head, lr 1e-4 | 22.5 |" in text
    # the pick is by validation R-sum (136.75 > 100), never by test300 (where the other is better)
    other = {**ROW, "label": "other", "val": {"t2v": metrics(20.0, 40.0, 40.0, 9.0), "v2t": ROW["val"]["v2t"]},
             "test300": {"t2v": metrics(30.0, 50.0, 60.0, 3.0), "v2t": ROW["test300"]["v2t"]}}
    assert towers.summary_lines([other, ROW]) == [
        "- Best on validation among the configurations of section 5: lite0 + meanp (val R-sum 136.8); on test300 "
        "text-to-video R@1 14.0, R@10 48.7 (goal R@1 >= 20)."]
    assert accuracy.Study(**json.loads((tmp_path / "accuracy.json").read_text())) == study


def test_a_bad_runs_file_is_a_one_line_error(tmp_path):
    import pytest

    from vtr_core.errors import VtrError

    head = tmp_path / "best.pt"
    head.write_bytes(b"a head")
    cases = {"missing.json": None, "list.json": "{}", "keys.json": json.dumps([{"label": "x", "backbone": "lite"}]),
             "head.json": json.dumps([{"label": "x", "backbone": "lite", "head": str(tmp_path / "none.pt")}])}
    messages = {"missing.json": "not a towers runs file", "list.json": "expected a non-empty list",
                "keys.json": "not a towers runs file", "head.json": "none.pt does not exist"}
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_text(content)
        with pytest.raises(VtrError, match=messages[name]):
            towers.read_runs(tmp_path / name)
    (tmp_path / "ok.json").write_text(json.dumps([{"label": "x", "backbone": "lite", "head": str(head)}]))
    assert towers.read_runs(tmp_path / "ok.json") == [towers.TowerRun("x", "lite", str(head))]


def test_a_validation_only_run_reads_its_training_record_and_never_touches_test300(tmp_path, lite_backbone,
                                                                                  monkeypatch):
    from vtr_core.methods import save_head

    record = {"val_t2v": metrics(25.0, 55.0, 70.0, 4.0), "val_v2t": metrics(33.0, 66.0, 80.0, 3.0)}
    head = create_head("meanp", lite_backbone, num_frames=12)
    save_head(head, tmp_path / "best.pt", lite_backbone.id, 12, extra={"record": record, "epoch": 3})
    monkeypatch.setattr(towers, "_split", lambda *a, **k: (_ for _ in ()).throw(AssertionError("indexed videos")))
    monkeypatch.setattr(towers, "frames_per_second", lambda backbone: 50.0)
    run = towers.TowerRun("lite1 + tuned text tower + meanp", "lite", str(tmp_path / "best.pt"), "text tower + head",
                          validation_only=True)
    row = towers.measure(run, tmp_path / "no-data")
    assert row["val"] == {"t2v": record["val_t2v"], "v2t": record["val_v2t"]} and "test300" not in row
    cells = [c.strip() for c in towers.render_towers([row])[2].strip("|").split("|")]
    assert cells[2:6] == ["25.0", "55.0", "70.0", "4"] and cells[10] == "not run (not chosen)"
    assert cells[11:18] == [""] * 7 and cells[-2] == "50"
    # validation picks it (150 > 136.75): the summary asks for its test300 run instead of inventing one
    assert towers.summary_lines([ROW, row]) == [
        "- Best on validation among the configurations of section 5: lite1 + tuned text tower + meanp (val R-sum "
        "150.0), listed as validation only: measure it on test300 (drop validation_only)."]


def test_each_image_side_is_timed_once_so_its_rows_agree(tmp_path, lite_backbone, monkeypatch):
    """A tuned text tower shares its image tower's speed (frames_id); a tuned image stage would not."""
    from vtr_core.backbones.lite import save_text_tower, text_tower_id
    from vtr_core.methods import save_head

    record = {"val_t2v": metrics(25.0, 55.0, 70.0, 4.0), "val_v2t": metrics(33.0, 66.0, 80.0, 3.0)}
    spec = save_text_tower(lite_backbone.text_tower_copy(), tmp_path / "tower.pt", lite_backbone)
    head = create_head("meanp", lite_backbone, num_frames=12)
    runs = []
    for name, backbone_id, backbone in [("plain", lite_backbone.id, "lite"),
                                        ("tuned", text_tower_id(tmp_path / "tower.pt"), spec)]:
        save_head(head, tmp_path / f"{name}.pt", backbone_id, 12, extra={"record": record})
        runs.append(towers.TowerRun(name, backbone, str(tmp_path / f"{name}.pt"), validation_only=True))
    timed = []
    monkeypatch.setattr(towers, "frames_per_second", lambda backbone: timed.append(backbone.frames_id) or 40.0 + len(timed))
    speeds: dict = {}
    rows = [towers.measure(run, tmp_path / "no-data", speeds=speeds) for run in runs]
    assert timed == [lite_backbone.frames_id] and [r["frames_per_s"] for r in rows] == [41.0, 41.0]


def test_the_shipped_default_is_replaced_only_by_a_clear_validation_gain():
    shipped = {**ROW, "label": "shipped", "shipped_default": True}
    def ahead(gain: float) -> dict:
        t2v = metrics(22.5 + gain, 50.25, 64.0, 5.0)  # R-sum 136.75 + gain
        return {**ROW, "label": f"ahead by {gain}", "val": {"t2v": t2v, "v2t": ROW["val"]["v2t"]}}
    assert towers.summary_lines([shipped, ahead(2.5)])[1] == (
        "- The shipped default: shipped (val R-sum 136.8); on test300 text-to-video R@1 14.0, R@10 48.7 (goal R@1 "
        ">= 20). The best is 2.5 ahead on validation, less than the 3.0 that replacing the shipped model needs, "
        "so the default stays.")
    assert towers.summary_lines([shipped, ahead(3.5)])[1].endswith("at least the 3.0 that replacing the shipped "
                                                                    "model needs: ship it.")
    assert len(towers.summary_lines([shipped, ahead(-1.0)])) == 1  # the default is the best: one line
