"""The dataset commands: train a head, evaluate one, and regenerate the results and accuracy tables."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vtr_core.cli.progress import log_to_stderr, progress_bar
from vtr_core.errors import VtrError


def _load_split(args: argparse.Namespace, backbone, split: str):
    """A dataset split with its stored video features and caption features."""
    from vtr_core.training import caption_features, load_dataset, video_features

    dataset = load_dataset(args.data_dir, split)
    videos = video_features(dataset, backbone, args.cache, progress=progress_bar(f"features {split}"))
    return dataset, videos, caption_features(dataset.queries, backbone, args.cache), \
        caption_features(dataset.captions, backbone, args.cache)


def _training_corpus(args: argparse.Namespace) -> list[str]:
    """Captions whose words seed s3ma's concept bank: the training split's, never the test's."""
    from vtr_core.training import load_dataset

    try:
        return load_dataset(args.data_dir, "train700").captions
    except VtrError:
        return []


def _format_metrics(m: dict) -> str:
    return f"R@1 {m['R@1']:5.1f}  R@5 {m['R@5']:5.1f}  R@10 {m['R@10']:5.1f}  MdR {m['MdR']:6.1f}  MnR {m['MnR']:7.1f}"


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from vtr_core.backbones import create_backbone
    from vtr_core.methods import resolve_head
    from vtr_core.training import evaluate_head

    backbone = create_backbone(args.backbone, args.device)
    dataset, videos, queries, captions = _load_split(args, backbone, args.split)
    head, source = resolve_head(args.method, backbone, args.checkpoint, args.zero_shot,
                                num_frames=videos.frames.shape[1], corpus=_training_corpus(args))
    rerank = None if args.all_pairs else (args.rerank_top_k or head.eval_rerank_top_k)
    result = evaluate_head(head, videos.frames, videos.patches, queries, torch.as_tensor(dataset.query_video),
                           captions, torch.as_tensor(dataset.caption_video), rerank_top_k=rerank,
                           dsl_temperature=args.dsl_temperature, method=args.method, backbone=backbone.spec,
                           split=args.split, head_source=source, reviser=args.reviser, raw=videos.raw)
    print(f"{args.method} on {dataset.name} ({len(dataset)} videos, {len(dataset.queries)} queries, "
          f"{len(dataset.captions)} captions), backbone {backbone.spec}, head {source}")
    revised = "DSL" if args.reviser == "dsl" else "inverted softmax"
    for label, row in (("", result.plain), (f"{revised}, transductive ", result.dsl)):
        print(f"  {label}text-to-video  {_format_metrics(row['t2v'])}")
        print(f"  {label}video-to-text  {_format_metrics(row['v2t'])}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result.as_record(args.dsl), indent=1))
    return 0


def _head_settings(pairs: list[str]) -> dict:
    """`--set temporal_layers=1 --set num_concepts=512` -> typed head-config overrides."""
    settings = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise VtrError(f"--set takes KEY=VALUE, got {pair!r}")
        try:
            settings[key.strip()] = json.loads(value)
        except ValueError:
            settings[key.strip()] = value
    return settings


def _train_config(args: argparse.Namespace):
    from vtr_core.training import TrainConfig

    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                       weight_decay=args.weight_decay, caption_passes=args.caption_passes)


def _tune_text(args: argparse.Namespace, backbone) -> int:
    """train --end-to-end on lite: its text tower and the head together on stored video features,
    the best epoch on the 100 held-out train700 videos (or the last, with --no-holdout)."""
    import torch

    from vtr_core.methods import create_head
    from vtr_core.training.image_stage import ImageStage, stage_inputs
    from vtr_core.training.text_tower import IMAGE_LR_SCALE, TEXT_LR_SCALE, CaptionedFeatures, tune_text_tower

    def captioned(split: str) -> CaptionedFeatures:
        dataset, videos, _, _ = _load_split(args, backbone, split)
        caption_video = torch.as_tensor(dataset.caption_video)
        inputs = None
        if args.image_stages:
            inputs = stage_inputs(dataset.video_paths, backbone, args.image_stages, videos.frames.shape[1], args.cache,
                                  progress=progress_bar(f"image stage inputs {split}"))
        # validation queries: every caption (see _validation_data)
        return CaptionedFeatures(videos.frames, videos.patches, videos.raw, dataset.captions, caption_video,
                                 dataset.captions, caption_video, stage_inputs=inputs)

    holdout = args.split == "train700" and not args.no_holdout
    data = captioned("train" if holdout else args.split)
    num_frames = data.frames.shape[1]
    head = create_head(args.method, backbone, num_frames=num_frames, corpus=data.captions, seed=args.seed,
                       for_training=True, **_head_settings(args.set))
    output = Path(args.output or f"runs/{args.method}-lite-text")
    result, spec = tune_text_tower(backbone, head, data, _train_config(args), output, num_frames,
                                   validation=captioned("val") if holdout else None,
                                   text_lr_scale=args.backbone_lr_scale or TEXT_LR_SCALE,
                                   image_stage=ImageStage(backbone, args.image_stages) if args.image_stages else None,
                                   image_lr_scale=args.image_lr_scale or IMAGE_LR_SCALE)
    print(f"tuned the text tower with {args.method} for {len(result.history)} epochs in {result.seconds:.0f} s; "
          f"best epoch {result.best_epoch}; backbone {spec}; head {output / 'best.pt'}")
    (output / "history.json").write_text(json.dumps(result.history, indent=1))
    if args.ship:
        spec = _ship_text_tower(args, output, backbone, num_frames)
    print(f"index with it: python -m vtr_core index VIDEO_DIR --index NEW_INDEX --backbone {spec}")
    return 0


def _ship_text_tower(args: argparse.Namespace, output: Path, backbone, num_frames: int) -> str:
    """train --end-to-end --ship on lite: the tower as precomputed/text_towers/TOWER-DATASET.pt
    (the backbone `TOWER:DATASET`), its head as that backbone's shipped head; the spec."""
    import shutil

    from vtr_core.backbones import create_backbone
    from vtr_core.resources import shipped_text_towers_dir

    name = Path(args.data_dir).resolve().name
    shipped = shipped_text_towers_dir()
    shipped.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(output / "text_tower.pt", shipped / f"{backbone.image_tower.name}-{name}.pt")
    spec = f"{backbone.image_tower.name}:{name}"
    _ship(args, output, create_backbone(spec, backbone.device), num_frames)
    return spec


def _fine_tune(args: argparse.Namespace, backbone) -> int:
    """train --end-to-end: backbone and head together, from decoded frames (a GPU is advised)."""
    import torch

    from vtr_core.methods import create_head
    from vtr_core.training import EndToEndData, fine_tune, load_dataset, prepare_pixels
    from vtr_core.training.end_to_end import BACKBONE_LR_SCALE

    dataset = load_dataset(args.data_dir, args.split)
    frames = args.frames or 12
    pixels = prepare_pixels(dataset.video_paths, backbone, frames, progress=progress_bar("decoding"))
    head = create_head(args.method, backbone, num_frames=frames, corpus=dataset.captions, seed=args.seed,
                       for_training=True, **_head_settings(args.set))
    output = Path(args.output or f"runs/{args.method}-finetuned")
    result, spec = fine_tune(backbone, head, EndToEndData(pixels, dataset.captions, torch.as_tensor(dataset.caption_video)),
                             _train_config(args), output, frames,
                             backbone_lr_scale=args.backbone_lr_scale or BACKBONE_LR_SCALE)
    print(f"fine-tuned {result.steps} steps in {result.seconds:.0f} s; backbone {spec}; head {output / 'best.pt'}")
    print(f"index with it: python -m vtr_core index VIDEO_DIR --index NEW_INDEX --backbone {spec}")
    return 0


def _validation_data(args: argparse.Namespace, backbone):
    """The 100 videos of train700 held out of training ("val"), for choosing the best epoch. Every
    caption is a text-to-video query (2,000, not one per video): with 100 queries, R@1+R@5+R@10
    moved by +-5 from one epoch to the next, more than the settings it was to choose between."""
    import torch

    from vtr_core.training import ValidationData

    val_set, val_videos, _, val_captions = _load_split(args, backbone, "val")
    caption_video = torch.as_tensor(val_set.caption_video)
    return ValidationData(val_videos.frames, val_videos.patches, val_captions, caption_video, val_captions,
                          caption_video, raw=val_videos.raw)


def _step_progress(epochs: int):
    """The training loop's `progress(done, total)` as a progress bar of steps that names the epoch."""
    bar = progress_bar("training", unit="step")

    def step_progress(done: int, total: int) -> None:
        bar(done, total, f"epoch {done * epochs // max(1, total)}")

    return step_progress


def _ship(args: argparse.Namespace, output: Path, backbone, num_frames: int) -> None:
    """train --ship: the run's best checkpoint, in float16, to the shipped heads."""
    import torch

    from vtr_core.methods import backbone_slug, load_head, save_head
    from vtr_core.resources import shipped_heads_dir

    shipped = shipped_heads_dir()
    shipped.mkdir(parents=True, exist_ok=True)
    target = shipped / f"{args.method}-{backbone_slug(backbone)}.pt"
    best = load_head(output / "best.pt", backbone, method=args.method, num_frames=num_frames)
    save_head(best, target, backbone.id, num_frames, half=True,
              extra=torch.load(output / "best.pt", map_location="cpu", weights_only=True)["training"])
    print(f"shipped as {target}")


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from vtr_core.backbones import create_backbone
    from vtr_core.methods import backbone_slug, create_head
    from vtr_core.training import TrainData, init_distributed, train_head, world

    init_distributed()
    rank, _ = world()
    backbone = create_backbone(args.backbone, args.device)
    if args.image_stages and not (args.end_to_end and getattr(backbone, "tunes_text_tower", False)):
        raise VtrError(f"image stages are tuned end to end on a lite backbone (--end-to-end), not {backbone.spec}")
    if args.end_to_end:
        return _tune_text(args, backbone) if getattr(backbone, "tunes_text_tower", False) else _fine_tune(args, backbone)
    holdout = args.split == "train700" and not args.no_holdout
    dataset, videos, _, captions = _load_split(args, backbone, "train" if holdout else args.split)
    validation = _validation_data(args, backbone) if holdout else None
    num_frames = videos.frames.shape[1]
    head = create_head(args.method, backbone, num_frames=num_frames, corpus=dataset.captions, seed=args.seed,
                       for_training=True, **_head_settings(args.set)).to(backbone.device)
    output = Path(args.output or f"runs/{args.method}-{backbone_slug(backbone)}")
    config = _train_config(args)
    if rank == 0:
        print(f"training {args.method} on {dataset.name} ({len(dataset)} videos, {len(dataset.captions)} captions), "
              f"backbone {backbone.spec}, validation {'val (100 held-out train700 videos)' if holdout else 'none'}")
    result = train_head(
        head, TrainData(videos.frames, videos.patches, captions, torch.as_tensor(dataset.caption_video), raw=videos.raw),
        config, output, backbone.id, num_frames, validation=validation, resume=args.resume,
        log=print if rank == 0 else (lambda message: None),
        progress=_step_progress(config.epochs) if rank == 0 else None,
    )
    if rank == 0:
        print(f"best epoch {result.best_epoch} (validation R-sum {result.best_score:.1f}); "
              f"{result.steps} steps in {result.seconds:.0f} s; checkpoint {output / 'best.pt'}")
        (output / "history.json").write_text(json.dumps(result.history, indent=1))
        if args.ship:
            _ship(args, output, backbone, num_frames)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from vtr_core.backbones import create_backbone
    from vtr_core.studies.report import run_report, write_report

    backbone = create_backbone(args.backbone, args.device)
    report = run_report(args.data_dir, backbone, args.cache, log=log_to_stderr)
    write_report(report, Path(args.docs), None if args.no_readme else Path(args.readme))
    print(f"wrote {args.docs}/RESULTS.md and {args.docs}/results.json" + ("" if args.no_readme else f"; updated {args.readme}"))
    return 0


def cmd_accuracy(args: argparse.Namespace) -> int:
    from vtr_core.studies.accuracy import Study, run_study, write_study

    if args.towers:  # measure the configurations listed, then re-render from the stored study
        from vtr_core.studies.towers import run_towers

        run_towers(args.towers, args.data_dir, args.docs, args.cache, log=log_to_stderr)
        study = Study(**json.loads((Path(args.docs) / "accuracy.json").read_text()))
        write_study(study, Path(args.docs) / "ACCURACY.md", Path(args.docs) / "accuracy.json")
        print(f"wrote {args.docs}/towers.json and {args.docs}/ACCURACY.md")
        return 0
    study = run_study(args.data_dir, args.cache, folds=args.folds, epochs=args.epochs,
                      log=log_to_stderr)
    write_study(study, Path(args.docs) / "ACCURACY.md", Path(args.docs) / "accuracy.json")
    print(f"wrote {args.docs}/ACCURACY.md and {args.docs}/accuracy.json ({study.seconds:.0f} s)")
    return 0


def cmd_import_checkpoint(args: argparse.Namespace) -> int:
    from vtr_core.methods.released import import_checkpoint

    report = import_checkpoint(args.file, args.format, args.out, arch=args.arch)
    print(f"imported {args.file} ({args.format} format, {report.variant} head): {report.tower_keys} CLIP tower keys, "
          f"{len(report.key_map)} head keys")
    for key in report.ignored:
        print(f"  ignored {key} (carried by the format, used by nothing here)")
    print(f"backbone  {report.backbone_spec}")
    print(f"head      {report.head_path} ({report.method}, for backbone {report.backbone_id})")
    print(f"next: python -m vtr_core index VIDEOS --index INDEX --backbone {report.backbone_spec}")
    return 0
