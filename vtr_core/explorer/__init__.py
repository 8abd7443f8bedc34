"""The service behind the Gradio app: `service.Explorer` joins a `collection.CollectionService` (one
index kept current, its frames and captions, indexing and uploads) and a `query.QueryService`
(search, video-to-text, explanations, the DSL matrix). They return `records`; `panels`,
`explain_panels` and `plots` draw them with numpy and PIL; `corpus` reads caption files and
`results` the evaluation table. Nothing here imports Gradio."""
