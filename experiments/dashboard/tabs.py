"""Mesa's ``ComponentsView`` with named tabs, for both dashboard pages.

Mesa's own view (``mesa.visualization.solara_viz.ComponentsView``) lays each page of
components out on a draggable grid and labels the tabs "Page 0", "Page 1". This is
the same view (pages, grid layouts, lazy rendering of the current tab) with names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import solara
from mesa.visualization import solara_viz

Layout = list[dict[str, Any]]


def tabbed_view(
    page_names: dict[int, str], layouts: dict[int, Layout] | None = None
) -> Callable[..., Any]:
    """A ``ComponentsView(components, model)`` whose tabs are ``page_names``.

    Args:
        page_names: page number -> tab label.
        layouts: page number -> its initial grid layout (Mesa's default: two columns).
    """
    given = layouts or {}

    def initial(page: int, n: int) -> Layout:
        return given.get(page) or solara_viz.make_initial_grid_layout(n)

    @solara.component
    def NamedComponentsView(components: list[tuple[Any, int]], model: Any) -> None:
        pages: dict[int, list[Any]] = {}
        for component, page in components:
            pages.setdefault(page, []).append(solara_viz._wrap_component(component))
        order = sorted(pages)
        tab, set_tab = solara.use_state(0)
        grid, set_grid = solara.use_state({p: initial(p, len(c)) for p, c in pages.items()})
        with solara.v.Tabs(v_model=tab, on_v_model=set_tab):
            for page in order:
                solara.v.Tab(children=[page_names.get(page, f"Page {page}")])
        with solara.v.TabsItems(v_model=tab):
            for i, page in enumerate(order):
                with solara.v.TabItem():
                    if i == tab:

                        def on_layout(new: Any, page: int = page) -> None:
                            set_grid(lambda old: {**old, page: new})

                        solara.GridDraggable(
                            items=[c(model) for c in pages[page]],
                            grid_layout=grid.get(page, initial(page, len(pages[page]))),
                            resizable=True,
                            draggable=True,
                            on_grid_layout=on_layout,
                        )

    return NamedComponentsView
