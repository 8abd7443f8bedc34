"""The explorer's search tabs (Gradio): text to video, with the player and the query's timeline over
the clicked video, and video to text, with a caption timeline for a clip of several moments."""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import SimpleNamespace

import gradio as gr

from vtr_core.errors import VtrError
from vtr_core.explorer import panels
from vtr_core.explorer.records import ClipHit, MomentSpan, TextToVideo
from vtr_core.explorer.service import Explorer
from vtr_core.explorer.ui_common import (
    BEST_MOMENT,
    SEEK_ON_LOAD,
    moment_dropdown,
    moment_picker,
    moment_value,
    player_html,
    ui_errors,
)

NO_COMPARE = "none"
# what a search lists: (per_video, merge) of `QueryService.text_to_video`
RESULT_MODES = {"each video's best moment": (True, False), "every moment": (False, False),
                "every range (touching moments merged)": (False, True)}
BEST_BY_CAPTIONS = "moment whose best caption scores highest"


@dataclass
class Searched:
    """What a click on one of a search's results needs (kept per page in a gr.State)."""

    query: str
    method: str
    hits: list[ClipHit]  # without their thumbnails

    @classmethod
    def of(cls, result: TextToVideo) -> "Searched":
        return cls(result.query, result.method, [replace(h, thumbnail=None) for h in result.hits])


@dataclass
class Selected:
    """The result clicked: its video and best moment, and the search that found it."""

    query: str
    method: str
    video_id: str
    moment_id: int


def text_to_video_tab(explorer: Explorer, image_file: panels.ImageFiles) -> SimpleNamespace:
    queries, methods = explorer.queries, explorer.queries.methods

    def gallery(result) -> list[tuple[str, str]]:
        return [(image_file(image), caption) for image, caption in panels.gallery_items(result)]

    @ui_errors
    def search(query: str, method: str, compare: str, top_k: float, mode: str = next(iter(RESULT_MODES))):
        if mode not in RESULT_MODES:
            raise VtrError(f"unknown result mode {mode!r}: use one of {', '.join(RESULT_MODES)}")
        per_video, merge = RESULT_MODES[mode]
        first = queries.text_to_video(query, method, int(top_k), per_video=per_video, merge=merge)
        timing, second_gallery, second_rows, second_hits = panels.timings_text(first), [], [], None
        if compare and compare != NO_COMPARE:
            second = queries.text_to_video(query, compare, int(top_k), per_video=per_video, merge=merge)
            second_gallery, second_rows, second_hits = gallery(second), panels.hit_rows(second), Searched.of(second)
            timing += "  \n" + panels.timings_text(second)
        return (gallery(first), panels.hit_rows(first), second_gallery, second_rows, timing, Searched.of(first),
                second_hits)

    @ui_errors
    def timeline(selected: Selected | None):
        if selected is None:
            return gr.skip()
        view = queries.timeline(selected.query, selected.video_id, selected.method)
        return image_file(panels.timeline_chart(view))

    with gr.Row():
        query = gr.Textbox(label="Query", placeholder="describe a clip", scale=4, elem_id="query")
        top_k = gr.Slider(1, 30, value=8, step=1, label="results", scale=1)
    with gr.Row():
        method = gr.Radio(methods, value=queries.default_method, label="Method", elem_id="method")
        compare = gr.Dropdown([NO_COMPARE] + methods, value=NO_COMPARE, label="Side by side with", elem_id="compare")
        mode = gr.Radio(list(RESULT_MODES), value=next(iter(RESULT_MODES)), label="List", elem_id="result-mode")
        go = gr.Button("Search", variant="primary", elem_id="search-btn")
    gr.Examples(explorer.collection.example_queries(), inputs=[query], label="Example queries")
    timings = gr.Markdown(elem_id="timings")
    hits_a, hits_b, selected = gr.State(None), gr.State(None), gr.State(None)
    with gr.Row():
        with gr.Column():
            gallery_a = gr.Gallery(label="Results", columns=4, height=420, elem_id="gallery-a")
            table_a = gr.Dataframe(headers=panels.HIT_COLUMNS, interactive=False, elem_id="table-a")
        with gr.Column(visible=False) as column_b:
            gallery_b = gr.Gallery(label="Side by side", columns=4, height=420, elem_id="gallery-b")
            table_b = gr.Dataframe(headers=panels.HIT_COLUMNS, interactive=False, elem_id="table-b")
    with gr.Row():
        with gr.Column():
            playing = gr.Markdown("Click a result to play it from the start of its moment.", elem_id="playing")
            player = gr.HTML("", elem_id="player", js_on_load=SEEK_ON_LOAD, label="Selected clip")
        chart = gr.Image(type="filepath", show_label=False, elem_id="timeline", label="Score over the video")
    gr.on([go.click, query.submit], search, [query, method, compare, top_k, mode],
          [gallery_a, table_a, gallery_b, table_b, timings, hits_a, hits_b], api_name="search",
          concurrency_id="search", concurrency_limit=4)
    compare.change(lambda c: gr.update(visible=c != NO_COMPARE), compare, column_b, api_visibility="private",
                   queue=False)
    return SimpleNamespace(results=[(gallery_a, hits_a), (gallery_b, hits_b)], player=player, playing=playing,
                           selected=selected, chart=chart, timeline=timeline)


def play_clicked(explorer: Explorer, found: Searched | None, index: int
                 ) -> tuple[str, str, Selected, list[MomentSpan]] | None:
    """(player HTML starting at the hit's range, caption, the selection, moments of its video) for
    the hit clicked, or None when it is gone (its video removed since the search)."""
    collection = explorer.collection
    try:
        hit = found.hits[index]
        path = collection.index.video_path(collection.index.row_of(hit.video_id))
    except (AttributeError, KeyError, IndexError, TypeError):
        return None
    caption = f"**{hit.label}** · {found.method} score {hit.score:.3f} · from {hit.start_s:.1f} s"
    selected = Selected(found.query, found.method, hit.video_id, hit.moment_id)
    return player_html(path, hit.start_s), caption, selected, explorer.queries.moments(hit.video_id)


def video_to_text_tab(explorer: Explorer) -> SimpleNamespace:
    queries, methods = explorer.queries, explorer.queries.methods

    @ui_errors
    def captions(upload: str | None, pick: str | None, method: str, corpus: str | None, top_k: float,
                 moment: int | str | None = BEST_MOMENT):
        chosen = None if upload else moment_value(moment)
        result = queries.video_to_text(upload or pick, method, corpus, int(top_k), moment_id=chosen)
        rows = panels.caption_timeline_rows(result)
        return panels.caption_summary(result), panels.caption_rows(result), gr.update(value=rows, visible=bool(rows))

    @ui_errors
    def moments_of(pick: str | None, moment: int | None):
        if not pick:
            return gr.update(choices=[(BEST_BY_CAPTIONS, BEST_MOMENT)], value=BEST_MOMENT, visible=False)
        return moment_picker(queries.moments(pick), BEST_BY_CAPTIONS, moment)

    with gr.Row():
        with gr.Column():
            upload = gr.Video(label="Upload a clip", sources=["upload"], elem_id="v2t-video", height=260)
            pick = gr.Dropdown(explorer.collection.video_ids(), value=None, elem_id="v2t-pick",
                               label="...or pick one from the collection (used when nothing is uploaded)")
            moment = moment_dropdown([], BEST_BY_CAPTIONS, "v2t-moment")
        with gr.Column():
            method = gr.Radio(methods, value=queries.default_method, label="Method")
            corpus = gr.File(label="Caption corpus (.txt one per line, or .jsonl); default: the collection's captions",
                             file_types=[".txt", ".jsonl"], type="filepath")
            top_k = gr.Slider(1, 30, value=10, step=1, label="captions")
            go = gr.Button("Rank captions", variant="primary", elem_id="v2t-btn")
    summary = gr.Markdown(elem_id="v2t-summary")
    table = gr.Dataframe(headers=panels.CAPTION_COLUMNS, interactive=False, wrap=True, elem_id="v2t-captions")
    timeline = gr.Dataframe(headers=panels.TIMELINE_COLUMNS, interactive=False, wrap=True, visible=False,
                            label="Caption timeline: each moment's best captions", elem_id="v2t-timeline")
    go.click(captions, [upload, pick, method, corpus, top_k, moment], [summary, table, timeline], api_name="captions",
             concurrency_id="search")
    pick.input(moments_of, [pick, moment], moment, api_visibility="private", queue=False)
    return SimpleNamespace(clip_lists=[pick])
