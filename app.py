"""The Gradio explorer: a thin front end over vtr_core.explorer (all logic lives in the library).

    python app.py                       the bundled demo collection (assets/ + precomputed/)
    python app.py --index DIR           any index built with `python -m vtr_core index`

One function per tab builds its components and wires its events; `build` puts the tabs together
and wires what crosses them (a clicked result becomes the clip to explain; new clips appear in
every clip list).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from vtr_core.errors import VtrError
from vtr_core.explorer import explain_panels, panels
from vtr_core.explorer.records import DSL_NOTE
from vtr_core.explorer.results import results_table
from vtr_core.explorer.service import Explorer
from vtr_core.explorer.serving import serve_settings
from vtr_core.resources import demo_index_dir

log = logging.getLogger("vtr_core.app")
COLLECTION_CAPTIONS = "collection captions"
TYPED_QUERIES = "my queries"
NO_COMPARE = "none"
# the library names its settings in errors (VtrError.setting); the page says which app flag sets them
SETTING_HINTS = {"video_root": "start the app with --video-root DIR", "backbone": "--backbone",
                 "auth": "--auth USER:PASSWORD or $VTR_AUTH; --no-auth to serve without", "port": "--port"}
# Explain tab: one slot per (panel kind, part); kinds always present are plain values, others toggle
EXPLAIN_SLOTS = [("frames", "image", "frame-attention"), ("patches", "image", "patch-map"),
                 ("terms", "image", "terms"), ("gates", "image", "gates"), ("concepts", "text", "concepts"),
                 ("concepts", "image", "concept-map"), ("alignments", "text", "extra")]
ALWAYS_SHOWN = {"frames", "terms"}


def ui_errors(fn):
    """Input errors become one-line messages in the UI; anything else too, logged in full here."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except VtrError as exc:
            hint = SETTING_HINTS.get(exc.setting or "")
            raise gr.Error(f"{exc} ({hint})" if hint else str(exc), print_exception=False) from None
        except Exception as exc:  # a bug: keep the trace in the server log, not in the user's face
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"internal error ({type(exc).__name__}): {str(exc).splitlines()[0][:200] if str(exc) else ''}",
                           print_exception=False) from None

    return wrapper


def text_to_video_tab(explorer: Explorer, image_file: panels.ImageFiles) -> SimpleNamespace:
    queries, methods = explorer.queries, explorer.queries.methods

    def gallery(result) -> list[tuple[str, str]]:
        return [(image_file(image), caption) for image, caption in panels.gallery_items(result)]

    @ui_errors
    def search(query: str, method: str, compare: str, top_k: float):
        first = queries.text_to_video(query, method, int(top_k))
        timing, second_gallery, second_rows = panels.timings_text(first), [], []
        if compare and compare != NO_COMPARE:
            second = queries.text_to_video(query, compare, int(top_k))
            second_gallery, second_rows = gallery(second), panels.hit_rows(second)
            timing += "  \n" + panels.timings_text(second)
        return gallery(first), panels.hit_rows(first), second_gallery, second_rows, timing

    with gr.Row():
        query = gr.Textbox(label="Query", placeholder="describe a clip", scale=4, elem_id="query")
        top_k = gr.Slider(1, 30, value=8, step=1, label="results", scale=1)
    with gr.Row():
        method = gr.Radio(methods, value=queries.default_method, label="Method", elem_id="method")
        compare = gr.Dropdown([NO_COMPARE] + methods, value=NO_COMPARE, label="Side by side with", elem_id="compare")
        go = gr.Button("Search", variant="primary", elem_id="search-btn")
    gr.Examples(explorer.collection.example_queries(), inputs=[query], label="Example queries")
    timings = gr.Markdown(elem_id="timings")
    with gr.Row():
        with gr.Column():
            gallery_a = gr.Gallery(label="Results", columns=4, height=420, elem_id="gallery-a")
            table_a = gr.Dataframe(headers=panels.HIT_COLUMNS, interactive=False, elem_id="table-a")
        with gr.Column(visible=False) as column_b:
            gallery_b = gr.Gallery(label="Side by side", columns=4, height=420, elem_id="gallery-b")
            table_b = gr.Dataframe(headers=panels.HIT_COLUMNS, interactive=False, elem_id="table-b")
    with gr.Row():
        player = gr.Video(label="Selected clip", interactive=False, elem_id="player", height=300)
        playing = gr.Markdown("Click a result to play it.")
    gr.on([go.click, query.submit], search, [query, method, compare, top_k],
          [gallery_a, table_a, gallery_b, table_b, timings], api_name="search", concurrency_id="search",
          concurrency_limit=4)
    compare.change(lambda c: gr.update(visible=c != NO_COMPARE), compare, column_b, api_visibility="private",
                   queue=False)
    return SimpleNamespace(results=[(gallery_a, table_a), (gallery_b, table_b)], player=player, playing=playing)


def video_to_text_tab(explorer: Explorer) -> SimpleNamespace:
    queries, methods = explorer.queries, explorer.queries.methods

    @ui_errors
    def captions(upload: str | None, pick: str | None, method: str, corpus: str | None, top_k: float):
        result = queries.video_to_text(upload or pick, method, corpus, int(top_k))
        return panels.caption_summary(result), panels.caption_rows(result)

    with gr.Row():
        with gr.Column():
            upload = gr.Video(label="Upload a clip", sources=["upload"], elem_id="v2t-video", height=260)
            pick = gr.Dropdown(explorer.collection.video_ids(), value=None, elem_id="v2t-pick",
                               label="...or pick one from the collection (used when nothing is uploaded)")
        with gr.Column():
            method = gr.Radio(methods, value=queries.default_method, label="Method")
            corpus = gr.File(label="Caption corpus (.txt one per line, or .jsonl); default: the collection's captions",
                             file_types=[".txt", ".jsonl"], type="filepath")
            top_k = gr.Slider(1, 30, value=10, step=1, label="captions")
            go = gr.Button("Rank captions", variant="primary", elem_id="v2t-btn")
    summary = gr.Markdown(elem_id="v2t-summary")
    table = gr.Dataframe(headers=panels.CAPTION_COLUMNS, interactive=False, wrap=True, elem_id="v2t-captions")
    go.click(captions, [upload, pick, method, corpus, top_k], [summary, table], api_name="captions",
             concurrency_id="search")
    return SimpleNamespace(clip_lists=[pick])


def explain_outputs(rendered: dict[str, explain_panels.Rendered], image_file: panels.ImageFiles,
                    term_rows: list[list]) -> list:
    """One value per EXPLAIN_SLOTS entry (the score-term table after the terms chart)."""
    values = []
    for kind, part, _ in EXPLAIN_SLOTS:
        shown = rendered.get(kind)
        value = (image_file(shown.image) if part == "image" else shown.text) if shown else None
        values.append(value if kind in ALWAYS_SHOWN else gr.update(value=value, visible=bool(value)))
        if kind == "terms":
            values.append(term_rows)
    return values


def explain_tab(explorer: Explorer, image_file: panels.ImageFiles) -> SimpleNamespace:
    queries, collection = explorer.queries, explorer.collection
    clips, frames = collection.video_ids(), collection.index.header.num_frames

    @ui_errors
    def explain(query: str, video_id: str, method: str, frame: float):
        view = queries.explain(query, video_id, method)
        rendered = explain_panels.render_explanation(view, int(frame) - 1 if frame else None)
        return explain_outputs(rendered, image_file, explain_panels.term_rows(view))

    with gr.Row():
        query = gr.Textbox(label="Query", value=collection.example_queries(1)[0], scale=3, elem_id="explain-query")
        clip = gr.Dropdown(clips, value=clips[0] if clips else None, label="Clip", scale=1, elem_id="explain-clip")
    with gr.Row():
        method = gr.Radio(queries.methods, value=queries.default_method, label="Method", elem_id="explain-method")
        frame = gr.Slider(0, frames, value=0, step=1, label="Frame for the patch map (0: most attended)")
        go = gr.Button("Explain", variant="primary", elem_id="explain-btn")
    slots = {}

    def slot(number: int) -> None:
        kind, part, elem_id = EXPLAIN_SLOTS[number]
        visible = kind in ALWAYS_SHOWN
        slots[elem_id] = (gr.Image(type="filepath", elem_id=elem_id, show_label=False, visible=visible)
                          if part == "image" else gr.Markdown(visible=visible, elem_id=elem_id))
        if kind == "terms":
            slots["term-table"] = gr.Dataframe(headers=explain_panels.TERM_COLUMNS, interactive=False)

    slot(0)  # frames across the page, the patch map beside the score's terms and gates, then the rest
    with gr.Row():
        slot(1)
        with gr.Column():
            slot(2), slot(3)
    for number in range(4, len(EXPLAIN_SLOTS)):
        slot(number)
    gr.on([go.click, query.submit], explain, [query, clip, method, frame], list(slots.values()), api_name="explain",
          concurrency_id="search")
    dsl_section(explorer, method, image_file)
    return SimpleNamespace(clip=clip, clip_lists=[clip])


def dsl_section(explorer: Explorer, method: gr.Radio, image_file: panels.ImageFiles) -> None:
    @ui_errors
    def dsl(source: str, typed: str, count: float, method: str):
        queries = typed.splitlines() if source == TYPED_QUERIES else None
        if source == TYPED_QUERIES and not any(q.strip() for q in queries):
            raise VtrError("type two or more queries, one per line, or use the collection's captions")
        view = explorer.queries.dsl_matrix(method, queries, int(count))
        before, after = panels.dsl_heat_maps(view)
        return image_file(before), image_file(after), panels.change_rows(view)

    gr.Markdown("### Dual softmax over a query set\n" + DSL_NOTE)
    with gr.Row():
        source = gr.Radio([COLLECTION_CAPTIONS, TYPED_QUERIES], value=COLLECTION_CAPTIONS, label="Queries")
        count = gr.Slider(2, 24, value=8, step=1, label="clips (collection captions)")
        go = gr.Button("Compute DSL", elem_id="dsl-btn")
    typed = gr.Textbox(label="My queries, one per line (scored against their top clips)", lines=3)
    with gr.Row():
        before = gr.Image(label="Before DSL", type="filepath", elem_id="dsl-before", show_label=False)
        after = gr.Image(label="After DSL", type="filepath", elem_id="dsl-after", show_label=False)
    changes = gr.Dataframe(headers=panels.CHANGE_COLUMNS, interactive=False, wrap=True, elem_id="dsl-changes")
    go.click(dsl, [source, typed, count, method], [before, after, changes], api_name="dsl", concurrency_id="search")


def collection_tab(explorer: Explorer, demo: gr.Blocks) -> SimpleNamespace:
    collection = explorer.collection

    def allow_media() -> None:
        for root in collection.media_roots():
            if root not in demo.allowed_paths:
                demo.allowed_paths.append(root)

    @ui_errors
    def index_folder(folder: str, progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
        report = collection.index_folder(folder, lambda done, total, item: progress((done, total), desc=f"indexing {item}"))
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

    def play(rows: list, evt: gr.SelectData):
        """Plays the clip picked in a gallery and offers it to the explain tab."""
        try:
            video_id = rows.iloc[evt.index, 1] if hasattr(rows, "iloc") else rows[evt.index][1]
            path = collection.index.video_path(collection.index.row_of(video_id))
        except (KeyError, IndexError, TypeError):
            return gr.skip(), gr.skip(), gr.skip()
        return path, f"**{video_id}**", gr.update(value=video_id)

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
        for gallery, table in t2v.results:
            gallery.select(play, table, [t2v.player, t2v.playing, explain.clip], api_visibility="private")
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
                            workdir=args.workdir, video_roots=args.video_root, max_upload_bytes=args.max_upload_mb << 20)
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
                allowed_paths=explorer.collection.media_roots(), max_file_size=f"{args.max_upload_mb}mb", show_error=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
