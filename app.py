"""The Gradio explorer: a thin front end over vtr_core.explorer (all logic lives in the library).

    python app.py                       the bundled demo collection (assets/ + precomputed/)
    python app.py --index DIR           any index built with `python -m vtr_core index`

The search and explain tabs are built in vtr_core/explorer/ui_*.py; this file builds the
collection and results tabs, puts the tabs together and wires what crosses them (a clicked result
plays from its moment's start and becomes the moment to explain; new clips appear in every clip
list).
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from vtr_core.errors import VtrError
from vtr_core.explorer import panels
from vtr_core.explorer.results import results_table
from vtr_core.explorer.service import Explorer
from vtr_core.explorer.serving import serve_settings
from vtr_core.explorer.ui_common import SETTING_HINTS, moment_picker, ui_errors
from vtr_core.explorer.ui_explain import BEST_FOR_QUERY, explain_tab
from vtr_core.explorer.ui_search import Searched, play_clicked, text_to_video_tab, video_to_text_tab
from vtr_core.resources import demo_index_dir

def collection_tab(explorer: Explorer, demo: gr.Blocks) -> SimpleNamespace:
    collection = explorer.collection

    def allow_media() -> None:
        for root in collection.media_roots():
            if root not in demo.allowed_paths:
                demo.allowed_paths.append(root)

    @ui_errors
    def index_folder(folder: str, progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
        report = collection.index_folder(
            folder, lambda done, total, item: progress((done, total), desc=f"indexing {item}"))
        allow_media()
        failed = "".join(f"\n- skipped: {reason}" for _, reason in report.failed[:20])
        return report.summary() + failed, panels.info_text(collection.info())

    @ui_errors
    def add_clip(path: str | None, progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
        if not path:
            raise VtrError("no clip uploaded: choose a video file first")
        progress(0.1, desc="decoding and encoding the clip")
        video_id, report = collection.add_clip(path, Path(path).name)
        allow_media()
        return f"added **{video_id}** ({report.summary()})", panels.info_text(collection.info())

    info = gr.Markdown(panels.info_text(collection.info()), elem_id="collection-info")
    refresh = gr.Button("Refresh")
    with gr.Row():
        folder = gr.Textbox(label="Folder of videos on the server", scale=3, elem_id="folder")
        index_go = gr.Button("Index folder", scale=1, elem_id="index-btn")
    with gr.Row():
        clip_file = gr.File(label="Add a clip", file_types=["video"], type="filepath", elem_id="add-clip")
        add_go = gr.Button("Add clip", elem_id="add-btn")
    status = gr.Markdown(elem_id="collection-status")
    changes = [index_go.click(index_folder, folder, [status, info], api_name="index_folder",
                              concurrency_id="indexing", concurrency_limit=1),
               add_go.click(add_clip, clip_file, [status, info], api_name="add_clip", concurrency_id="indexing",
                            concurrency_limit=1),
               refresh.click(ui_errors(lambda: panels.info_text(collection.info())), None, info,
                             api_name="collection", concurrency_id="search")]
    return SimpleNamespace(info=info, changes=changes)


def results_tab() -> None:
    gr.Markdown("The evaluation table of `docs/results.json` (`python -m vtr_core report`). DSL rows are "
                "transductive: they revise the score matrix of the whole query set at once.")
    columns, rows = results_table()
    table = gr.Dataframe(value=rows, headers=columns, interactive=False, elem_id="results-table")
    gr.Button("Reload").click(ui_errors(lambda: results_table()[1]), None, table, api_name="results")


def build(explorer: Explorer) -> gr.Blocks:
    collection = explorer.collection
    info = collection.info()
    # images go out as files written atomically (see panels.ImageFiles): concurrent searches share thumbnails
    image_file = panels.ImageFiles(Path(tempfile.gettempdir()) / f"vtr-explorer-{os.getpid()}")
    atexit.register(shutil.rmtree, image_file.folder, ignore_errors=True)  # a clean exit leaves nothing behind

    def play(found: Searched | None, evt: gr.SelectData):
        """Plays the range picked in a gallery from its start, and offers its query, clip, moment and
        method to the explain tab."""
        clicked = play_clicked(explorer, found, evt.index)
        if clicked is None:
            return (gr.skip(),) * 8
        html, caption, selected, spans = clicked
        return (html, caption, selected, selected.query, gr.update(value=selected.video_id),
                moment_picker(spans, BEST_FOR_QUERY, selected.moment_id), selected.method, None)

    # delete_cache: Gradio's copies of results and uploads older than an hour go, every half hour
    with gr.Blocks(title="Video-text retrieval explorer", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(f"# Video-text retrieval explorer\n**device:** `{info.device}` · **backbone:** `{info.backbone}` "
                    f"(`{info.backbone_id}`) · index `{info.source_dir}`", elem_id="header")
        with gr.Tabs():
            with gr.Tab("Text to video", id="t2v"):
                t2v = text_to_video_tab(explorer, image_file)
            with gr.Tab("Video to text", id="v2t"):
                v2t = video_to_text_tab(explorer)
            with gr.Tab("Explain", id="explain"):
                explain = explain_tab(explorer, image_file)
            with gr.Tab("Collection", id="collection"):
                changed = collection_tab(explorer, demo)
            with gr.Tab("Results", id="results"):
                results_tab()
        for gallery, found in t2v.results:  # a click plays the range, then draws the query over its video
            gallery.select(play, found, [t2v.player, t2v.playing, t2v.selected, explain.query, explain.clip,
                                         explain.moment, explain.method, t2v.chart], api_visibility="private",
                           queue=False).then(t2v.timeline, t2v.selected, t2v.chart, api_visibility="private",
                                             concurrency_id="search")
        clip_lists = v2t.clip_lists + explain.clip_lists

        def clip_choices():
            ids = collection.video_ids()
            return tuple(gr.update(choices=ids) for _ in clip_lists)

        for event in changed.changes:
            event.then(clip_choices, None, clip_lists, api_visibility="private")
        # a page opened later shows the collection as it is now, not as it was at start-up
        demo.load(lambda: (panels.info_text(collection.info()), *clip_choices()), None, [changed.info, *clip_lists],
                  api_visibility="private")
    demo.queue(default_concurrency_limit=2)
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Video-text retrieval explorer (Gradio)")
    parser.add_argument("--index", default=str(demo_index_dir()), help="index directory (default: the bundled demo)")
    parser.add_argument("--captions", help="caption corpus for video-to-text (default: the collection's captions)")
    parser.add_argument("--backbone", default=None, help="must match the index's backbone (default: the index's)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--workdir", help="where user copies and uploads go (default ~/.cache/vtr_core/explorer)")
    parser.add_argument("--video-root", action="append", default=[], metavar="DIR",
                        help="a folder whose subfolders the Collection tab may index (repeatable; the folders "
                             "already holding the collection's clips are always allowed)")
    parser.add_argument("--max-upload-mb", type=int, default=500, help="largest clip or corpus a browser may upload")
    parser.add_argument("--host", default=None,
                        help="address to listen on (default $GRADIO_SERVER_NAME, else 127.0.0.1: this machine only; "
                             "0.0.0.0 exposes the app to the network and then needs --auth or --no-auth)")
    parser.add_argument("--port", type=int, default=None, help="default $GRADIO_SERVER_PORT, else 7860")
    parser.add_argument("--auth", metavar="USER:PASSWORD", help="Gradio's login for every page (default $VTR_AUTH)")
    parser.add_argument("--no-auth", action="store_true", help="serve beyond this machine without credentials")
    parser.add_argument("--share", action="store_true", help="a public Gradio share link (off by default)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        serving = serve_settings(args.host, args.port, args.auth, args.no_auth, args.share)
        explorer = Explorer(args.index, device=args.device, backbone=args.backbone, captions=args.captions,
                            workdir=args.workdir, video_roots=args.video_root,
                            max_upload_bytes=args.max_upload_mb << 20)
    except VtrError as exc:
        hint = SETTING_HINTS.get(exc.setting or "")
        print(f"error: {exc}" + (f" ({hint})" if hint else ""), file=sys.stderr)
        return 2
    info = explorer.collection.info()
    print(f"explorer: {info.videos} clips, backbone {info.backbone} on {info.device}", file=sys.stderr)
    if (args.share or not serving.loopback) and serving.auth is None:
        print(f"warning: listening on {serving.host} without credentials (--no-auth): anyone who can reach this "
              "machine can search and add clips", file=sys.stderr)
    demo = build(explorer)
    demo.launch(server_name=serving.host, server_port=serving.port, share=args.share, auth=serving.auth,
                allowed_paths=explorer.collection.media_roots(), max_file_size=f"{args.max_upload_mb}mb",
                show_error=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
