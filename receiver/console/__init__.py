"""The operator console: a web page for the receiving centre, served by
the receiver (`panic receiver console`, or `panic receiver serve
--console`). Theory of operation, workflow, roles and security settings:
docs/console.md.

| module | what it holds |
|---|---|
| app.py | the aiohttp application: routes, roles, forms, start() |
| live.py | the console's store thread, the hub following the event feed, SSE, ConsoleReceiver |
| security.py | cookies, CSRF, login throttling, the headers of every answer |
| views.py | queue order, timeline, statistics and CSV, from rows (no I/O) |
| position.py | where the console says the person is: the estimate (receiver/estimate.py view) and the trail |
| templates/ | Jinja2 pages (autoescaped) |
| static/ | console.js, map.js, CSS, Leaflet 1.9.4 (kept here, SOURCE.md) |

Imports: receiver/ (store, core, users), aiohttp, jinja2; nothing in
receiver/ outside this package imports it except cli.py.
"""
