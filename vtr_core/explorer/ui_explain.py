"""The explorer's Explain tab (Gradio): one moment of a clip explained for a query, with its frames
timed in the video, and the dual softmax over a query set."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from vtr_core.errors import VtrError
from vtr_core.explorer import explain_panels, panels
from vtr_core.explorer.records import DSL_NOTE
from vtr_core.explorer.service import Explorer
from vtr_core.explorer.ui_common import BEST_MOMENT, moment_dropdown, moment_picker, moment_value, ui_errors

COLLECTION_CAPTIONS = "collection captions"
TYPED_QUERIES = "my queries"
BEST_FOR_QUERY = "best moment for the query"
# one slot per (panel kind, part); kinds always present are plain values, others toggle
EXPLAIN_SLOTS = [("frames", "image", "frame-attention"), ("patches", "image", "patch-map"),
                 ("terms", "image", "terms"), ("gates", "image", "gates"), ("concepts", "text", "concepts"),
                 ("concepts", "image", "concept-map"), ("alignments", "text", "extra")]
ALWAYS_SHOWN = {"frames", "terms"}


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
    def explain(query: str, video_id: str, method: str, frame: float, moment: int | str | None = BEST_MOMENT):
        view = queries.explain(query, video_id, method, moment_value(moment))
        rendered = explain_panels.render_explanation(view, int(frame) - 1 if frame else None)
        return explain_outputs(rendered, image_file, explain_panels.term_rows(view))

    @ui_errors
    def moments_of(video_id: str | None, moment: int | None):
        return moment_picker(queries.moments(video_id) if video_id else [], BEST_FOR_QUERY, moment)

    with gr.Row():
        query = gr.Textbox(label="Query", value=collection.example_queries(1)[0], scale=3, elem_id="explain-query")
        clip = gr.Dropdown(clips, value=clips[0] if clips else None, label="Clip", scale=1, elem_id="explain-clip")
        moment = moment_dropdown(queries.moments(clips[0]) if clips else [], BEST_FOR_QUERY, "explain-moment", scale=1)
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
    gr.on([go.click, query.submit], explain, [query, clip, method, frame, moment], list(slots.values()),
          api_name="explain", concurrency_id="search")
    # the user's pick only: a clicked result sets the clip and its moment together (app.py)
    clip.input(moments_of, [clip, moment], moment, api_visibility="private", queue=False)
    dsl_section(explorer, method, image_file)
    return SimpleNamespace(query=query, clip=clip, moment=moment, method=method, clip_lists=[clip])


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
