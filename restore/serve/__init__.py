"""``restore serve``: a local web page and a REST API to restore images (``pip install -e ".[web]"``).

* :mod:`restore.serve.uploads`: uploaded files, their size and pixel limits checked before
  decoding; decoded as the CLI reads files (:func:`restore.operators.io.decode_pixels`).
* :mod:`restore.serve.jobs`: a bounded queue of restoration jobs run by worker threads through
  the public API (:func:`restore.restore` and the per-task helpers), with progress, previews
  and a cooperative cancel from an observer plugin, results kept in memory.
* :mod:`restore.serve.app`: the ASGI application (FastAPI): the page, ``/api``, same-origin and
  host checks.
* ``static/``: the page (HTML, JavaScript, CSS; no build step, nothing fetched from elsewhere).

Nothing here is imported by ``import restore`` or ``restore --help``.
"""
