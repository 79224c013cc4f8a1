"""``eleanor-cloud ui``: a read-only web dashboard over a store (extra ``eleanor-cloud[ui]``).

One job per module: :mod:`.data` reads from the store (only reads), :mod:`.timeline`
draws a stage's attempts as an inline SVG, :mod:`.html` holds the page shell and the
escaping helpers, :mod:`.pages` and :mod:`.task_page` render the task table and one
task, :mod:`.app` is the Starlette application (:func:`eleanor_cloud.ui.app.create_app`),
and :mod:`.command` the click command. Starlette and uvicorn are imported by
:mod:`.app` and by the command when it runs, never by ``import eleanor_cloud`` nor by
``eleanor-cloud --help``. See ``docs/ui.md``.
"""
