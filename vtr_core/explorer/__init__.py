"""The service behind the Gradio app: `service.Explorer` joins a `collection.CollectionService` (one
index kept current, its frames and captions, indexing and uploads) and a `query.QueryService`
(search, video-to-text, explanations, the DSL matrix). They return `records`; `panels`,
`explain_panels` and `plots` draw them with numpy and PIL; `corpus` reads caption files and
`results` the evaluation table; `clip_moments` gives video-to-text a clip's moments (a long upload
cut by the index's moment policy). Only the `ui_*` modules import Gradio: they build the app's
search and explain tabs (app.py puts the tabs together)."""
