"""The policy server's routes: one ``APIRouter`` per resource.

=================  ==============================================  ======================
module             routes                                          auth
=================  ==============================================  ======================
``health``         ``GET /healthz``, ``/readyz``, ``/metrics``     none
``policy``         ``GET /v1/policy``, ``POST /v1/policy/reload``  API key; admin key
``recommend``      ``POST /v1/recommend``                          API key (the router's)
``forecast``       ``POST /v1/forecast``                           API key (the router's)
``feedback``       ``POST /v1/feedback``                           API key (the router's)
``sites``          ``POST /v1/sites/{site}/events``, ``GET .../   API key (the router's)
                   state``, ``POST .../recommend``, ``.../forecast``
=================  ==============================================  ======================

A route validates its request, calls one domain function and shapes the response.
"""
