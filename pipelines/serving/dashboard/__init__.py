"""The fleet dashboard the prediction API serves at `/`, behind the API token (a login form sets a session cookie).

    /                                      the page (fleet, vehicle and model views; plotly.js charts)
    /login, /logout                        the token in, a session cookie out (login.py, api_auth.SessionCookies)
    /dashboard/static/<file>               its script, styles and the installed plotly package's plotly.min.js
    /dashboard/api/fleet                   a sorted, filtered page of the fleet's risk table at one as_of date
    /dashboard/api/timeline                per day: vehicles with the BMS alarm, predicted to alarm, alerts started
    /dashboard/api/vehicles/<vin>          newest prediction and reasons, probability history, cell-range trend
    /dashboard/api/vehicles/<vin>/cells    cells × days deviation heatmap with the suspect cell
    /dashboard/api/model                   the champions' cards: metrics beside the reference recipe's, curves
    /dashboard/api/models/<v>/report/<f>   a file of a version's evaluation report (figures, index.html)

The JSON views take the bearer token or the session cookie and answer 401 JSON without either; the page sends a
browser without a session to the login form. Each view is bounded by a page, a date range or one vehicle, so the
browser never receives the whole lake (lake_reads.py says what the server keeps in memory).
"""

from pipelines.serving.dashboard.router import dashboard_router

__all__ = ["dashboard_router"]
