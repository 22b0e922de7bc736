"""The web demo behind ``speechbraid serve``: :mod:`.demo` holds the models and answers requests (no web library),
:mod:`.app` lays the Gradio page over it. Only the CLI imports this package, and Gradio is imported when the
page is built, so nothing else pays for it or needs it installed."""
