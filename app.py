"""The Gradio explorer: a thin front end over vtr_core.explorer.service (all logic lives in the library).

    python app.py                       the bundled demo collection (assets/ + precomputed/)
    python app.py --index DIR           any index built with `python -m vtr_core index`
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import tempfile
from pathlib import Path

import gradio as gr

from vtr_core.errors import VtrError
from vtr_core.explorer import panels
from vtr_core.explorer.service import DSL_NOTE, Explorer, results_table
from vtr_core.resources import demo_index_dir

log = logging.getLogger("vtr_core.app")
COLLECTION_CAPTIONS = "collection captions"
TYPED_QUERIES = "my queries"
NO_COMPARE = "none"


# the library names its settings in errors (VtrError.setting); the page says which app flag sets them
SETTING_HINTS = {"video_root": "start the app with --video-root DIR"}


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


def build(explorer: Explorer) -> gr.Blocks:
    methods, default_method = explorer.methods, explorer.default_method
    # images go out as files written atomically (see panels.ImageFiles): concurrent searches share thumbnails
    image_file = panels.ImageFiles(Path(tempfile.gettempdir()) / f"vtr-explorer-{os.getpid()}")

    def gallery(result) -> list[tuple[str, str]]:
        return [(image_file(image), caption) for image, caption in panels.gallery_items(result)]
    info = explorer.collection_info()
    frames = info.frames

    @ui_errors
    def search(query: str, method: str, compare: str, top_k: float):
        first = explorer.text_to_video(query, method, int(top_k))
        timing = panels.timings_text(first)
        second_gallery, second_rows = [], []
        if compare and compare != NO_COMPARE:
            second = explorer.text_to_video(query, compare, int(top_k))
            second_gallery, second_rows = gallery(second), panels.hit_rows(second)
            timing += "  \n" + panels.timings_text(second)
        return gallery(first), panels.hit_rows(first), second_gallery, second_rows, timing

    def play(rows: list, evt: gr.SelectData):
        """Plays the clip picked in a gallery and offers it to the explain tab."""
        try:
            video_id = rows.iloc[evt.index, 1] if hasattr(rows, "iloc") else rows[evt.index][1]
            path = explorer.index.video_path(explorer.index.row_of(video_id))
        except (KeyError, IndexError, TypeError):
            return gr.skip(), gr.skip(), gr.skip()
        return path, f"**{video_id}**", gr.update(value=video_id)

    @ui_errors
    def captions(upload: str | None, pick: str | None, method: str, corpus: str | None, top_k: float):
        result = explorer.video_to_text(upload or pick, method, corpus, int(top_k))
        return panels.caption_summary(result), panels.caption_rows(result)

    @ui_errors
    def explain(query: str, video_id: str, method: str, frame: float):
        view = explorer.explain(query, video_id, method)
        gates, concept_map = image_file(panels.gates_chart(view)), image_file(panels.concept_map(view))
        concepts, extra = panels.concepts_text(view), panels.extra_text(view)
        patch = image_file(panels.patch_heat_map(view, int(frame) - 1 if frame else None))
        return (
            image_file(panels.frame_attention(view)),
            gr.update(value=patch, visible=patch is not None),
            image_file(panels.terms_chart(view)),
            panels.term_rows(view),
            gr.update(value=gates, visible=gates is not None),
            gr.update(value=concepts, visible=bool(concepts)),
            gr.update(value=concept_map, visible=concept_map is not None),
            gr.update(value=extra, visible=bool(extra)),
        )

    @ui_errors
    def dsl(source: str, typed: str, count: float, method: str):
        queries = typed.splitlines() if source == TYPED_QUERIES else None
        if source == TYPED_QUERIES and not any(q.strip() for q in queries):
            raise VtrError("type two or more queries, one per line, or use the collection's captions")
        view = explorer.dsl_matrix(method, queries, int(count))
        before, after = panels.dsl_heat_maps(view)
        return image_file(before), image_file(after), panels.change_rows(view)

    def allow_media() -> None:
        for root in explorer.media_roots():
            if root not in demo.allowed_paths:
                demo.allowed_paths.append(root)

    @ui_errors
    def index_folder(folder: str, progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
        report = explorer.index_folder(folder, lambda done, total, item: progress((done, total), desc=f"indexing {item}"))
        allow_media()
        failed = "".join(f"\n- skipped: {reason}" for _, reason in report.failed[:20])
        return report.summary() + failed, panels.info_text(explorer.collection_info())

    @ui_errors
    def add_clip(path: str | None, progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
        if not path:
            raise VtrError("no clip uploaded: choose a video file first")
        progress(0.1, desc="decoding and encoding the clip")
        video_id, report = explorer.add_clip(path, Path(path).name)
        allow_media()
        return f"added **{video_id}** ({report.summary()})", panels.info_text(explorer.collection_info())

    @ui_errors
    def collection():
        return panels.info_text(explorer.collection_info())

    @ui_errors
    def results():
        return results_table()[1]

    def clip_choices():
        ids = explorer.video_ids()
        return gr.update(choices=ids), gr.update(choices=ids)

    # delete_cache: Gradio's copies of results and uploads older than an hour go, every half hour
    with gr.Blocks(title="Video-text retrieval explorer", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(f"# Video-text retrieval explorer\n**device:** `{info.device}` · **backbone:** `{info.backbone}` "
                    f"(`{info.backbone_id}`) · index `{info.source_dir}`", elem_id="header")
        with gr.Tabs():
            with gr.Tab("Text to video", id="t2v"):
                with gr.Row():
                    query = gr.Textbox(label="Query", placeholder="describe a clip", scale=4, elem_id="query")
                    top_k = gr.Slider(1, 30, value=8, step=1, label="results", scale=1)
                with gr.Row():
                    method = gr.Radio(methods, value=default_method, label="Method", elem_id="method")
                    compare = gr.Dropdown([NO_COMPARE] + methods, value=NO_COMPARE, label="Side by side with",
                                          elem_id="compare")
                    go = gr.Button("Search", variant="primary", elem_id="search-btn")
                gr.Examples(explorer.example_queries(), inputs=[query], label="Example queries")
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

            with gr.Tab("Video to text", id="v2t"):
                with gr.Row():
                    with gr.Column():
                        upload = gr.Video(label="Upload a clip", sources=["upload"], elem_id="v2t-video", height=260)
                        pick = gr.Dropdown(explorer.video_ids(), value=None, elem_id="v2t-pick",
                                           label="...or pick one from the collection (used when nothing is uploaded)")
                    with gr.Column():
                        v2t_method = gr.Radio(methods, value=default_method, label="Method")
                        corpus = gr.File(label="Caption corpus (.txt one per line, or .jsonl); default: the "
                                               "collection's captions", file_types=[".txt", ".jsonl"], type="filepath")
                        v2t_k = gr.Slider(1, 30, value=10, step=1, label="captions")
                        v2t_go = gr.Button("Rank captions", variant="primary", elem_id="v2t-btn")
                v2t_summary = gr.Markdown(elem_id="v2t-summary")
                v2t_table = gr.Dataframe(headers=panels.CAPTION_COLUMNS, interactive=False, wrap=True,
                                         elem_id="v2t-captions")

            with gr.Tab("Explain", id="explain"):
                with gr.Row():
                    ex_query = gr.Textbox(label="Query", value=explorer.example_queries(1)[0], scale=3,
                                          elem_id="explain-query")
                    ex_clip = gr.Dropdown(explorer.video_ids(), value=explorer.video_ids()[0] if info.videos else None,
                                          label="Clip", scale=1, elem_id="explain-clip")
                with gr.Row():
                    ex_method = gr.Radio(methods, value=default_method, label="Method", elem_id="explain-method")
                    ex_frame = gr.Slider(0, frames, value=0, step=1, label="Frame for the patch map (0: most attended)")
                    ex_go = gr.Button("Explain", variant="primary", elem_id="explain-btn")
                attention = gr.Image(label="Per-frame attention", type="filepath", elem_id="frame-attention", show_label=False)
                with gr.Row():
                    patch_map = gr.Image(label="Patch heat map", type="filepath", elem_id="patch-map", show_label=False)
                    with gr.Column():
                        terms_image = gr.Image(label="Score terms", type="filepath", elem_id="terms", show_label=False)
                        terms_table = gr.Dataframe(headers=panels.TERM_COLUMNS, interactive=False)
                        gates = gr.Image(label="Stream gates", type="filepath", visible=False, elem_id="gates", show_label=False)
                concepts = gr.Markdown(visible=False, elem_id="concepts")
                concept_map = gr.Image(label="Sparse concepts per frame", type="filepath", visible=False,
                                       elem_id="concept-map", show_label=False)
                extra = gr.Markdown(visible=False, elem_id="extra")

                gr.Markdown("### Dual softmax over a query set\n" + DSL_NOTE)
                with gr.Row():
                    dsl_source = gr.Radio([COLLECTION_CAPTIONS, TYPED_QUERIES], value=COLLECTION_CAPTIONS,
                                          label="Queries")
                    dsl_count = gr.Slider(2, 24, value=8, step=1, label="clips (collection captions)")
                    dsl_go = gr.Button("Compute DSL", elem_id="dsl-btn")
                dsl_typed = gr.Textbox(label="My queries, one per line (scored against their top clips)", lines=3)
                with gr.Row():
                    dsl_before = gr.Image(label="Before DSL", type="filepath", elem_id="dsl-before", show_label=False)
                    dsl_after = gr.Image(label="After DSL", type="filepath", elem_id="dsl-after", show_label=False)
                dsl_changes = gr.Dataframe(headers=panels.CHANGE_COLUMNS, interactive=False, wrap=True,
                                           elem_id="dsl-changes")

            with gr.Tab("Collection", id="collection"):
                info_md = gr.Markdown(panels.info_text(info), elem_id="collection-info")
                refresh = gr.Button("Refresh")
                with gr.Row():
                    folder = gr.Textbox(label="Folder of videos on the server", scale=3, elem_id="folder")
                    index_go = gr.Button("Index folder", scale=1, elem_id="index-btn")
                with gr.Row():
                    clip_file = gr.File(label="Add a clip", file_types=["video"], type="filepath", elem_id="add-clip")
                    add_go = gr.Button("Add clip", elem_id="add-btn")
                status = gr.Markdown(elem_id="collection-status")

            with gr.Tab("Results", id="results"):
                gr.Markdown("The evaluation table of `docs/results.json` (`python -m vtr_core report`). DSL rows are "
                            "transductive: they revise the score matrix of the whole query set at once.")
                columns, rows = results_table()
                results_df = gr.Dataframe(value=rows, headers=columns, interactive=False, elem_id="results-table")
                results_go = gr.Button("Reload")

        # -- events: public ones have an api_name; searches and indexing are separate groups --------
        search_inputs = [query, method, compare, top_k]
        search_outputs = [gallery_a, table_a, gallery_b, table_b, timings]
        gr.on([go.click, query.submit], search, search_inputs, search_outputs, api_name="search",
              concurrency_id="search", concurrency_limit=4)
        compare.change(lambda c: gr.update(visible=c != NO_COMPARE), compare, column_b, api_visibility="private",
                       queue=False)
        gallery_a.select(play, table_a, [player, playing, ex_clip], api_visibility="private")
        gallery_b.select(play, table_b, [player, playing, ex_clip], api_visibility="private")
        v2t_go.click(captions, [upload, pick, v2t_method, corpus, v2t_k], [v2t_summary, v2t_table], api_name="captions",
                     concurrency_id="search")
        gr.on([ex_go.click, ex_query.submit], explain, [ex_query, ex_clip, ex_method, ex_frame],
              [attention, patch_map, terms_image, terms_table, gates, concepts, concept_map, extra],
              api_name="explain", concurrency_id="search")
        dsl_go.click(dsl, [dsl_source, dsl_typed, dsl_count, ex_method], [dsl_before, dsl_after, dsl_changes],
                     api_name="dsl", concurrency_id="search")
        index_go.click(index_folder, folder, [status, info_md], api_name="index_folder", concurrency_id="indexing",
                       concurrency_limit=1).then(clip_choices, None, [pick, ex_clip], api_visibility="private")
        add_go.click(add_clip, clip_file, [status, info_md], api_name="add_clip", concurrency_id="indexing",
                     concurrency_limit=1).then(clip_choices, None, [pick, ex_clip], api_visibility="private")
        refresh.click(collection, None, info_md, api_name="collection", concurrency_id="search").then(
            clip_choices, None, [pick, ex_clip], api_visibility="private")
        results_go.click(results, None, results_df, api_name="results")
        # a page opened later shows the collection as it is now, not as it was at start-up
        demo.load(lambda: (panels.info_text(explorer.collection_info()), *clip_choices()), None,
                  [info_md, pick, ex_clip], api_visibility="private")
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
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: this machine only; 0.0.0.0 exposes the app to the network)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="a public Gradio share link (off by default)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        explorer = Explorer(args.index, device=args.device, backbone=args.backbone, captions=args.captions,
                            workdir=args.workdir, video_roots=args.video_root, max_upload_bytes=args.max_upload_mb << 20)
    except VtrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = explorer.collection_info()
    print(f"explorer: {info.videos} clips, backbone {info.backbone} on {info.device}", file=sys.stderr)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach this machine can search and add clips",
              file=sys.stderr)
    demo = build(explorer)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, allowed_paths=explorer.media_roots(),
                max_file_size=f"{args.max_upload_mb}mb", show_error=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
