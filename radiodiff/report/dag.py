"""The pipeline's DAG in the report, drawn from radiodiff's stage table with the run's dataset
roots (a real root has no synthesize stage upstream): Graphviz when ``dot`` is installed, else
a layered matplotlib drawing. ``figures/dag.dot`` keeps the graph either way."""

from __future__ import annotations

import shutil
import subprocess
from functools import partial

from radiodiff.dag.stages import edges
from radiodiff.report import figures as F
from radiodiff.report.document import Doc

TARGET = "report"


def report_dag(params: dict) -> tuple[list[str], list[tuple[str, str]]]:
    """The stages the report depends on (itself included) and the edges between them."""
    all_edges = edges(params)
    needed, todo = {TARGET}, [TARGET]
    while todo:
        node = todo.pop()
        for a, b in all_edges:
            if b == node and a not in needed:
                needed.add(a)
                todo.append(a)
    return sorted(needed), [(a, b) for a, b in all_edges if a in needed and b in needed]


def to_dot(nodes: list[str], dag_edges: list[tuple[str, str]]) -> str:
    lines = [
        "digraph radiodiff {",
        "  graph [rankdir=TB, nodesep=0.25, ranksep=0.35];",
        '  node [shape=box, style="rounded,filled", fillcolor="#e8f0fe", color="#5b7bd5", fontsize=10];',
        '  edge [color="#888888", arrowsize=0.6];',
        *(f'  "{n}";' for n in nodes),
        *(f'  "{a}" -> "{b}";' for a, b in dag_edges),
        "}",
    ]
    return "\n".join(lines) + "\n"


def dag_section(doc: Doc, params: dict) -> dict:
    doc.heading("Pipeline DAG", 2, "dag")
    if not doc.style.dag:
        doc.para("Omitted (`report.dag: false`).")
        return {"dag": "omitted"}
    nodes, dag_edges = report_dag(params)
    dot = to_dot(nodes, dag_edges)
    (doc.figures_dir / "dag.dot").write_text(dot)
    what = f"The stages behind this report, {len(nodes)} stages and {len(dag_edges)} edges (radiodiff's stage table)"
    dot_exe = shutil.which("dot")
    if dot_exe:
        png = doc.figures_dir / "dag.png"
        r = subprocess.run(
            [dot_exe, "-Tpng", f"-Gdpi={doc.style.dpi}", "-o", str(png)], input=dot, text=True, capture_output=True
        )
        if r.returncode == 0:
            doc.image_file(png, "dag", f"{what}, drawn by Graphviz.")
            return {"dag": "graphviz", "stages": len(nodes), "edges": len(dag_edges)}
    doc.figure(
        partial(F.dag_figure, dict(zip(nodes, nodes, strict=True)), dag_edges, doc.style),
        "dag",
        f"{what}, layered by longest path (Graphviz is not installed; `figures/dag.dot` holds the graph).",
    )
    return {"dag": "matplotlib", "stages": len(nodes), "edges": len(dag_edges)}
